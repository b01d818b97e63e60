"""Text normalisation and the word tokenizer, shared by queries and passages.

MS MARCO carries mojibake (UTF-8 decoded as cp1252: `â€™` for `'`). ftfy repairs it; it only runs
on non-ASCII text, so the common all-ASCII passage costs nothing extra. Tokens follow the way the
GloVe 6B vocabulary writes words: lower case, punctuation split off, clitics as `'s` and `n't`.
"""
from __future__ import annotations

import re
import unicodedata

import ftfy

_NT_RE = re.compile(r"(\w)n't\b")
_TOKEN_RE = re.compile(r"n't|'s|'re|'ve|'ll|'d|'m|\w+|[^\w\s]")
# C0/C1 control characters other than whitespace: dropped before tokenising.
_CTRL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_MAX_CHARS = 20_000  # longer inputs are cut: a passage this long is not a passage


def normalize(text) -> str:
    """Repair encoding damage; the same function for queries and passages."""
    if text is None:
        return ""
    if not isinstance(text, str):
        text = str(text)
    if text.isascii():
        return _CTRL_RE.sub(" ", text) if not text.isprintable() else text
    text = text[:_MAX_CHARS * 2]
    # Repeat until nothing changes (at most 5 rounds): one round can uncover more damage, and
    # normalize(normalize(x)) must equal normalize(x) so that every path tokenises alike.
    for _ in range(5):
        fixed = _CTRL_RE.sub(" ", unicodedata.normalize("NFKC", ftfy.fix_text(text)))
        if fixed == text:
            break
        text = fixed
    return text


def tokenize(text, max_chars: int = _MAX_CHARS) -> list[str]:
    """Lower-case word tokens as GloVe writes them. Never fails on odd input."""
    text = normalize(text)[:max_chars].lower()
    if "n't" in text:
        text = _NT_RE.sub(r"\1 n't", text)
    return _TOKEN_RE.findall(text)
