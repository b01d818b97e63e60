"""Words GloVe lacks are split into the teacher's word pieces (common/wordpiece.py), the same way in
s02's workers, in a question at query time and in another corpus (s10 --beir)."""
import numpy as np

from common import wordpiece
from common.vocab import UNK, CorpusTokenizer, TokenTable, Vocab, tokenize_table
from common.wordpiece import PREFIX, WordPieces

PIECES = ["si", "mid", "##gm", "##et", "##se", "##ent", "##g", "##m", "s", "##i", "cafe"]


def _vocab(words=("definition", "of", "a", "cat")):
    return Vocab(["<pad>", "<unk>", *words, *wordpiece.entries(PIECES)])


def test_greedy_longest_match_first_with_inner_pieces():
    v = _vocab()
    name = lambda ids: [v.words[i][len(PREFIX):] if v.words[i].startswith(PREFIX) else v.words[i] for i in ids]
    assert name(v.encode("definition of a sigmet")) == ["definition", "of", "a", "si", "##gm", "##et"]
    assert name(v.encode("midsegment")) == ["mid", "##se", "##gm", "##ent"]
    # a word with a part no piece covers is unknown as a whole, as WordPiece does; symbols stay unknown
    assert v.encode("sigmex cat") == [UNK, v.index["cat"]]
    assert v.encode("• ®") == [UNK, UNK]
    # accents folded as the teacher's uncased tokenizer folds them
    assert name(v.encode("café")) == ["cafe"]


def test_known_words_stay_whole_and_the_cut_counts_pieces():
    v = _vocab(words=("si", "cat"))
    assert v.encode("si cat") == [v.index["si"], v.index["cat"]]  # a GloVe word is never split
    ids = v.encode("sigmet cat", max_len=2)
    assert ids == [v.index[PREFIX + "si"], v.index[PREFIX + "##gm"]]  # a piece, not the word "si"


def test_a_vocabulary_without_pieces_keeps_unknown_words_unknown():
    v = Vocab(["<pad>", "<unk>", "cat"])
    assert not v.pieces and v.encode("sigmet cat") == [UNK, 2]


def test_no_word_can_pose_as_a_piece():
    rows = WordPieces({PREFIX + "si": 5, "si": 2})
    assert rows.rows == {"si": 5}


def _tables(tmp_path, texts, whole):
    import pyarrow as pa
    import pyarrow.parquet as pq
    src = tmp_path / "p.parquet"
    pq.write_table(pa.table({"passage_id": np.arange(len(texts), dtype=np.int64), "text": texts}), src)
    tok = CorpusTokenizer(["definition", "of", "a", "cat", "dog"], workers=1, whole=whole, pieces=PIECES)
    tokenize_table(src, "passage_id", "text", tmp_path / "t.parquet", tok, 64, count_stats=True)
    return tok, tok.vocab("test"), TokenTable.read(tmp_path / "t.parquet", "passage_id")


def test_s02s_ids_are_the_ones_a_question_gets(tmp_path):
    texts = ["definition of a sigmet", "a dog", "midsegment of a cat •"]
    for whole in (True, False):
        tok, v, table = _tables(tmp_path, texts, whole)
        for i, t in enumerate(texts):
            assert list(table.flat[table.offsets[i]:table.offsets[i + 1]]) == v.encode(t)
        # every piece has an id, used or not: a question's word splits as the corpus's words did
        assert all(PREFIX + p in v.index for p in PIECES)
        assert tok.piece_tokens == 3 + 4 and tok.unknown_tokens == 1
        assert v.df[v.index[PREFIX + "##gm"]] == 2 and v.df[v.index[PREFIX + "cafe"]] == 0


def test_the_teachers_pieces_split_words_it_has_never_seen():
    pieces = wordpiece.teacher_pieces()
    assert len(pieces) > 20_000 and "##ing" in pieces and not any(p.startswith("[") for p in pieces)
    v = Vocab(["<pad>", "<unk>", "of"] + wordpiece.entries(pieces))
    ids = v.encode("volunterilay of sigmet")
    assert UNK not in ids and len(ids) > 3 and ids == v.encode("Volunterilay of SIGMET")
