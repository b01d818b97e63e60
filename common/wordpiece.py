"""Word pieces for the words GloVe lacks.

A word outside GloVe's list ("sigmet", "midsegment", "mcdouble", a misspelling) would be <unk> and
count for nothing in the dense vector. Instead it is split into the teacher's word pieces, as
BERT's WordPiece splits it (greedy longest match first, "##" marking a piece inside a word), and
each piece is a vocabulary row of its own with a vector from the teacher (s03). The same word in a
question and in a passage gives the same pieces, so an unknown word still matches itself, and a
piece such as "mid" or "##ment" says something about its meaning.

The pieces are stored in the vocabulary as words with a prefix no token can carry ("<wp>si",
"<wp>##gm": the tokenizer splits "<" off), so a vocabulary file holds everything needed to split
a word: s09 needs neither the teacher nor its tokenizer. Only pieces of letters and digits are
kept, and only such words are split: a symbol GloVe lacks ("•", "®") stays <unk>.
"""
from __future__ import annotations

import re
import unicodedata

PREFIX = "<wp>"
_PIECE_RE = re.compile(r"^(##)?[a-z0-9]+$")
_WORD_RE = re.compile(r"^[a-z0-9]+$")
MAX_WORD_CHARS = 100  # BERT's limit: a longer "word" is not one


def teacher_pieces() -> list[str]:
    """The teacher's word pieces of letters and digits, in its vocabulary's order (vocab.txt)."""
    from .teacher import model_dir
    path = model_dir() / "vocab.txt"
    with open(path, encoding="utf-8") as f:
        return [p for p in (line.rstrip("\n") for line in f) if _PIECE_RE.match(p)]


def entries(pieces: list[str]) -> list[str]:
    """The vocabulary words that stand for these pieces."""
    return [PREFIX + p for p in pieces]


def _fold(word: str) -> str:
    """Accents off, as the teacher's uncased tokenizer takes them off ("café" -> "cafe")."""
    if word.isascii():
        return word
    return "".join(c for c in unicodedata.normalize("NFD", word) if unicodedata.category(c) != "Mn")


class WordPieces:
    """Splits a word into piece rows. index: vocabulary word -> row, as Vocab.index holds it (its
    PREFIX entries are the pieces; a word whose accents fold to one of its words is that word).
    split() returns [] for a word that cannot be split (it stays <unk>)."""

    def __init__(self, index: dict):
        n = len(PREFIX)
        self.rows = {w[n:]: i for w, i in index.items() if w.startswith(PREFIX)}
        self.words = index
        self.longest = max((len(p) for p in self.rows), default=0)
        self._memo: dict[str, list[int]] = {}

    def __bool__(self):
        return bool(self.rows)

    def split(self, word: str) -> list[int]:
        got = self._memo.get(word)
        if got is None:
            got = self._split(word)
            if len(self._memo) < 1_000_000:  # bounded: a stream of made-up words cannot grow it forever
                self._memo[word] = got
        return got

    def _split(self, word: str) -> list[int]:
        w = _fold(word)
        if w != word and w in self.words:
            return [self.words[w]]
        if len(w) > MAX_WORD_CHARS or not _WORD_RE.match(w):
            return []
        out, start, rows = [], 0, self.rows
        while start < len(w):
            end = min(len(w), start + self.longest)
            while end > start:
                piece = w[start:end] if start == 0 else "##" + w[start:end]
                r = rows.get(piece)
                if r is not None:
                    out.append(r)
                    break
                end -= 1
            if end == start:
                return []  # as WordPiece: a word with a part no piece covers is unknown as a whole
            start = end
        return out
