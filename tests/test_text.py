from common.text import normalize, tokenize
from common.vocab import Vocab, UNK


def test_glove_style_tokens():
    assert tokenize("Don't stop: it's U.S. $5.") == ["do", "n't", "stop", ":", "it", "'s", "u", ".", "s", ".", "$", "5", "."]
    assert tokenize("Hello, WORLD!") == ["hello", ",", "world", "!"]


def test_mojibake_repaired_same_for_queries_and_passages():
    broken = "it\u00e2\u20ac\u2122s a caf\u00c3\u00a9"  # "it's a café" read as cp1252
    assert normalize(broken) == "it's a café"
    assert tokenize(broken) == tokenize("it's a café")


def test_odd_input_never_fails():
    for x in [None, "", "   ", 42, "\x00\x01ctl\x7f", "日本語のテキスト", "a" * 100_000]:
        toks = tokenize(x)
        assert isinstance(toks, list)
    assert tokenize("\x00ab\x07cd") == ["ab", "cd"]
    assert tokenize(None) == []


def test_unknown_words_are_kept_as_unk():
    v = Vocab(["<pad>", "<unk>", "cat", "sat"])
    assert v.encode("The cat sat") == [UNK, 2, 3]
