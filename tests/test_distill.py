"""Distillation on passages without a label (s04/s07 --distill-passages): which passages, and that
training uses them."""
import numpy as np
import pyarrow.parquet as pq
import torch

from common import teacher
from common.artifacts import write_manifest
from common.corpus import load_corpus
from common.train import attach_passages, train_set
from helpers import copy_data, run

CPU = torch.device("cpu")


def _train_passages(corpus):
    q = corpus.queries
    out = set()
    for s, pids in zip(q["split"], q["passage_ids"]):
        if s == "train":
            out |= {int(p) for p in pids}
    return out


def test_more_passages_are_training_passages_beyond_the_distilled_positives(tmp_path_factory, monkeypatch):
    d = copy_data(tmp_path_factory, "distill-passages")
    corpus = load_corpus(d)
    ts = train_set(corpus, pq.read_table(d / "triplets.parquet"), "train")
    pairs = np.unique(np.stack([ts.qids, ts.pids], 1), axis=0)[::2]  # half the pairs embedded
    ts.t_raw = (pairs, None, None)
    asked = []
    rng = np.random.default_rng(0)

    def fake_targets(data_dir, kind, ids, texts_for, device="cpu", log=print):
        asked.append((kind, np.asarray(ids).copy()))
        return rng.normal(size=(len(ids), teacher.DIM)).astype(np.float32)

    monkeypatch.setattr(teacher, "targets", fake_targets)
    basis = np.linalg.qr(rng.normal(size=(teacher.DIM, 8)))[0]
    n_all = attach_passages(ts, corpus, 10 ** 9, basis, CPU)
    got = set(corpus.ptok.ids[ts.x_rows].tolist())
    expected = (_train_passages(corpus) & set(corpus.ptok.ids.tolist())) - set(pairs[:, 1].tolist())
    assert n_all == len(got) == len(expected) > 0 and got == expected
    assert asked[-1][0] == "passages" and set(asked[-1][1].tolist()) == expected
    assert ts.x_t.shape == (n_all, 8) and np.allclose(np.linalg.norm(ts.x_t, axis=1), 1, atol=1e-5)
    # a smaller cap takes a subset of the same order: the teacher's cache serves every cap and seed
    n = attach_passages(ts, corpus, 7, basis, CPU)
    few = set(corpus.ptok.ids[ts.x_rows].tolist())
    assert n == 7 and few < got


def test_s04_and_s07_train_on_them(tmp_path_factory):
    """--out-dim 64: the folder's training pairs can give 64 teacher directions, so distillation runs."""
    d = copy_data(tmp_path_factory, "distill-passages-s04")
    args = ["--epochs", "2", "--batch-size", "32", "--out-dim", "64", "--wandb", "disabled"]
    r = run("s04_train_tower.py", d, *args, "--distill-passages", "30", "--out", "with.pt")
    assert "teacher targets for 30 more training passages" in r.stdout, r.stdout[-2000:]
    z = np.load(d / "teacher" / "passages.npz")
    corpus = load_corpus(d)
    assert len(set(z["ids"].tolist()) & _train_passages(corpus)) >= 30
    r0 = run("s04_train_tower.py", d, *args, "--distill-passages", "0", "--out", "without.pt")
    assert "more training passages" not in r0.stdout
    a = torch.load(d / "with.pt", weights_only=True)["state_dict"]
    b = torch.load(d / "without.pt", weights_only=True)["state_dict"]
    assert max((a[k].float() - b[k].float()).abs().max().item() for k in a) > 1e-4

    # s07 --mmse / --neg-distill: the teacher embeds s06's negatives and training uses them, from
    # without.pt (trained with the teacher); from the folder's s04 (without it) one line says what is needed
    s07 = ["--epochs", "1", "--batch-size", "32", "--wandb", "disabled", "--distill-passages", "0"]
    # s06's layout, its negatives taken from s01's (a search index is not what is tested here)
    pq.write_table(pq.read_table(d / "triplets.parquet"), d / "hard_negatives.parquet")
    write_manifest(d / "hard_negatives.parquet", "s06_mine_hard_negatives.py", {}, inputs={}, stats={})
    r = run("s07_train_w_hard_negatives.py", d, *s07, "--mmse", "1", check=False)
    assert r.returncode == 2 and "--mmse and --neg-distill need the teacher" in r.stderr, r.stderr[-2000:]
    assert "Traceback" not in r.stderr
    r = run("s07_train_w_hard_negatives.py", d, *s07, "--checkpoint", "without.pt", "--neg-distill", "2", "--mmse", "1")
    assert "teacher negatives:" in r.stdout and "'rows_with_negative': 0," not in r.stdout, r.stdout[-2000:]
    a = torch.load(d / "s07_model.pt", weights_only=True)["state_dict"]
    run("s07_train_w_hard_negatives.py", d, *s07, "--checkpoint", "without.pt")
    b = torch.load(d / "s07_model.pt", weights_only=True)["state_dict"]
    assert max((a[k].float() - b[k].float()).abs().max().item() for k in a) > 1e-4
