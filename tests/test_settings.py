"""One source for each setting: s02's token limits travel in the checkpoint and every encoder reads
them there; a split's labelled questions are one function; --help keeps the docstring's lines."""
import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from common.artifacts import read_json
from common.corpus import labelled_questions
from common.model import TwoTowerModel
from common.vocab import MAX_PASSAGE_TOKENS, MAX_QUERY_TOKENS, TokenTable, token_limits

torch.set_num_threads(1)
CPU = torch.device("cpu")


def _table(lengths, seed=0):
    rng = np.random.default_rng(seed)
    flat = rng.integers(2, 40, size=sum(lengths)).astype(np.int32)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    return TokenTable(np.arange(len(lengths), dtype=np.int64), flat, offsets)


def test_defaults_and_an_old_checkpoint():
    assert token_limits() == {"max_query_tokens": MAX_QUERY_TOKENS, "max_passage_tokens": MAX_PASSAGE_TOKENS}
    assert token_limits({"max_passage_tokens": 9, "max_query_tokens": 3}) == {"max_query_tokens": 3, "max_passage_tokens": 9}
    m = TwoTowerModel(40, 6, {"out_dim": 4, "max_query_tokens": 3, "max_passage_tokens": 9})
    ck = m.checkpoint()
    assert TwoTowerModel.from_checkpoint(ck).max_tokens("passage") == 9
    for k in ("max_query_tokens", "max_passage_tokens"):  # a checkpoint from before the keys
        del ck["config"][k]
    old = TwoTowerModel.from_checkpoint(ck)
    assert (old.max_tokens("query"), old.max_tokens("passage")) == (MAX_QUERY_TOKENS, MAX_PASSAGE_TOKENS)


def test_encoders_read_the_limit_from_the_config():
    from common.encode import encode_rows, encode_texts
    torch.manual_seed(0)
    m = TwoTowerModel(40, 6, {"out_dim": 4, "max_query_tokens": 2, "max_passage_tokens": 5},
                      embeddings=np.random.default_rng(0).normal(size=(40, 6)).astype(np.float32))
    t = _table([3, 8, 12, 1])
    rows = np.arange(4)
    for which, n in (("passage", 5), ("query", 2)):
        got = encode_rows(m, t, rows, which, CPU)
        assert np.allclose(got, encode_rows(m, t, rows, which, CPU, max_len=n), atol=1e-6)
        assert not np.allclose(got, encode_rows(m, t, rows, which, CPU, max_len=50), atol=1e-4)

    class V:  # a vocabulary where every word is known
        def encode(self, text, max_len=None):
            ids = [2 + len(w) for w in text.split()]
            return ids[:max_len] if max_len else ids
    v, known = encode_texts(m, V(), ["a bb ccc dddd"], CPU)
    assert known.tolist() == [2]  # the query limit
    assert np.allclose(v, encode_texts(m, V(), ["a bb"], CPU)[0], atol=1e-6)


def test_s02s_limits_reach_the_checkpoint(tmp_path_factory):
    from helpers import base_data, copy_data, run
    _, syn = base_data(tmp_path_factory)
    d = copy_data(tmp_path_factory, "limits")
    m = read_json(d / "passages_tok.parquet.manifest.json")["settings"]
    assert m == {"max_query_tokens": MAX_QUERY_TOKENS, "max_passage_tokens": MAX_PASSAGE_TOKENS}
    assert torch.load(d / "s04_model.pt", weights_only=True)["config"]["max_passage_tokens"] == MAX_PASSAGE_TOKENS
    run("s02_tkn_ms_marco.py", d, "--glove", syn["glove"], "--workers", "1",
        "--max-passage-tokens", "7", "--max-query-tokens", "3")
    assert max(len(x) for x in pq.read_table(d / "passages_tok.parquet")["tokens"].to_pylist()) == 7
    run("s04_train_tower.py", d, "--epochs", "1", "--batch-size", "64", "--wandb", "disabled", "--distill", "0")
    cfg = torch.load(d / "s04_model.pt", weights_only=True)["config"]
    assert (cfg["max_query_tokens"], cfg["max_passage_tokens"]) == (3, 7)
    from common.corpus import load_corpus
    from common.encode import load_model
    c = load_corpus(d)
    assert c.token_limits == {"max_query_tokens": 3, "max_passage_tokens": 7}
    model, _ = load_model(d / "s04_model.pt", c.vocab.fingerprint, CPU)
    assert model.max_tokens("passage") == 7


def test_labelled_questions():
    q = {"split": ["train", "test", "test", "test", "test"], "query_id": [1, 2, 3, 4, 5],
         "query": ["a", "b", "c", "d", "e"], "passage_ids": [[10], [20, 21], [30], [40, 41], []],
         "is_selected": [[1], [0, 1], [0], [1, 1], []]}
    t = labelled_questions(q, "test")
    assert t.qids.tolist() == [2, 4] and t.qids.dtype == np.int64
    assert t.relevant == [{21}, {40, 41}] and t.candidates == [[20, 21], [40, 41]] and t.texts == ["b", "d"]
    assert labelled_questions(q, "train", min_candidates=2).qids.tolist() == []
    no_text = {k: v for k, v in q.items() if k != "query"}
    assert labelled_questions(no_text, "train").texts is None and len(labelled_questions(no_text, "train")) == 1


@pytest.mark.parametrize("script", ["s10_evaluate.py", "s04_train_tower.py"])
def test_help_keeps_the_docstrings_lines(script, monkeypatch, capsys):
    import importlib
    import sys
    mod = importlib.import_module(script[:-3])
    monkeypatch.setattr(sys, "argv", [script, "--help"])
    with pytest.raises(SystemExit):
        mod.main()
    out = capsys.readouterr().out
    for line in mod.__doc__.strip().splitlines():
        assert line.rstrip() in out
    assert "(default: data)" in out  # and the defaults are still shown
