"""Training under torchrun (2 CPU processes, gloo) against one process, and resuming a killed s04/s07.

The slow tests start from helpers.copy_data's small folder (s00-s04). With one process as the
reference: 2 processes split every batch between them and sum their gradients weighted by their
share, so they follow one process to float rounding (the issue asks for validation MRR@10 within
0.02; the weights are checked too). A run killed after an epoch and run again resumes there and
ends with the same weights, bit for bit, as one never interrupted.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from helpers import ROOT, copy_data, run
from launch import run_killed

# --out-dim 64: the folder's 120 training pairs can give 64 teacher directions (not 192), so the
# default's distillation runs (the teacher's targets are already cached in data/teacher/)
S04 = ["--epochs", "3", "--batch-size", "32", "--out-dim", "64"]
# One BLAS thread, as torchrun gives each process, for every run compared bit for bit: numpy's
# products (the teacher's projection) then add up in the same order in each of them
ONE_THREAD = {"OMP_NUM_THREADS": "1"}


def torchrun(script, data, *args, nproc=2, timeout=300):
    e = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
                        str(ROOT / script), "--data-dir", str(data), *args],
                       cwd=ROOT, capture_output=True, text=True, env=e, timeout=timeout)
    assert r.returncode == 0, f"torchrun {script} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


def manifest(path):
    return json.loads(path.with_name(path.name + ".manifest.json").read_text())


def weights(path):
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def max_diff(a, b):
    assert a.keys() == b.keys()
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


def files(d):
    return {str(p.relative_to(d)) for p in d.rglob("*") if p.is_file() and "wandb" not in p.parts}


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    """s04 with S04's settings, one process, never interrupted: the reference."""
    d = copy_data(tmp_path_factory, "ddp-one")
    run("s04_train_tower.py", d, *S04, "--wandb", "disabled", env=ONE_THREAD)
    return d


# ------------------------------------------------------------------ quick: the split of a batch
def test_shares_of_a_batch_are_disjoint_and_whole():
    from common.distributed import Dist, local_batch
    b = np.random.default_rng(0).permutation(37)
    for world in (1, 2, 3, 5):
        parts = [local_batch(Dist(r, world, r, torch.device("cpu"), "gloo"), b) for r in range(world)]
        got = np.concatenate([p for p, _ in parts])
        assert sorted(got.tolist()) == sorted(b.tolist())
        assert sum(w for _, w in parts) == pytest.approx(1.0)
    assert local_batch(None, b)[0] is b and local_batch(None, b)[1] == 1.0
    # a last batch smaller than the world: the rank without a share computes with weight 0
    tail = b[:2]
    mine, w = local_batch(Dist(2, 3, 2, torch.device("cpu"), "gloo"), tail)
    assert len(mine) == 1 and w == 0.0


def test_resume_key_ignores_where_and_how_it_logs():
    import argparse
    from pathlib import Path
    from common.resume import run_key
    a = argparse.Namespace(data_dir=Path("x"), wandb="offline", wandb_project="p", lr=1e-3, seed=0)
    b = argparse.Namespace(data_dir=Path("y"), wandb="disabled", wandb_project="q", lr=1e-3, seed=0)
    c = argparse.Namespace(data_dir=Path("x"), wandb="offline", wandb_project="p", lr=2e-3, seed=0)
    k = lambda ns, w=1: run_key("s04", ns, {"vocab": {"fingerprint": "v"}}, w)
    assert k(a) == k(b) and k(a) != k(c) and k(a) != k(a, 2)


# ------------------------------------------------------------------ slow: torchrun
@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    """s04 with S04's settings under torchrun, 2 processes: (folder, files before, its output)."""
    d = copy_data(tmp_path_factory, "ddp-two")
    before = files(d)
    return d, before, torchrun("s04_train_tower.py", d, *S04, "--wandb", "offline")


@pytest.mark.slow
def test_torchrun_two_processes_match_one(one_process, two_processes):
    d, before, r = two_processes
    assert "x 2 processes (gloo)" in r.stdout and "warning" not in r.stdout  # (distillation on)
    assert torch.load(d / "s04_model.pt", weights_only=True).get("teacher_basis") is not None
    assert r.stdout.count("best validation MRR@10") == 1, "only rank 0 reports"
    # rank 0 alone wrote: the checkpoint and its manifest (already in the copied folder), one W&B run
    assert files(d) == before, sorted(files(d) ^ before)
    assert not list(d.rglob(".*.tmp-*")) and not (d / "s04_model.resume.pt").exists()
    assert len(list((d / "wandb").glob("offline-run-*"))) == 1
    two, one = manifest(d / "s04_model.pt"), manifest(one_process / "s04_model.pt")
    assert two["stats"]["world_size"] == 2 and one["stats"]["world_size"] == 1
    assert abs(two["stats"]["val"]["mrr@10"] - one["stats"]["val"]["mrr@10"]) <= 0.02
    assert two["stats"]["val"]["epoch"] == one["stats"]["val"]["epoch"]
    for h2, h1 in zip(two["stats"]["history"], one["stats"]["history"]):
        assert abs(h2["val_mrr@10"] - h1["val_mrr@10"]) <= 0.02
        assert h2["loss"] == pytest.approx(h1["loss"], rel=1e-4)
    assert max_diff(weights(d / "s04_model.pt"), weights(one_process / "s04_model.pt")) < 1e-4
    # it loads as any checkpoint does (manifest, vocabulary, word table)
    from common.corpus import load_corpus
    from common.encode import load_model
    from common.train import validate, validation_set
    corpus = load_corpus(d)
    model, _ = load_model(d / "s04_model.pt", corpus.vocab.fingerprint, torch.device("cpu"))
    v = validate(model, corpus, validation_set(corpus), torch.device("cpu"))
    assert v["mrr@10"] == pytest.approx(two["stats"]["val"]["mrr@10"], abs=1e-9)


@pytest.mark.slow
def test_torchrun_one_process_is_the_plain_run(one_process, tmp_path_factory):
    """Every collective of the distributed path with one process (what a one-GPU machine can run
    under NCCL) leaves the plain run's arithmetic as it is: the same weights, bit for bit."""
    d = copy_data(tmp_path_factory, "ddp-one-torchrun")
    r = torchrun("s04_train_tower.py", d, *S04, "--wandb", "disabled", nproc=1)
    assert "x 1 processes (gloo)" in r.stdout
    assert max_diff(weights(d / "s04_model.pt"), weights(one_process / "s04_model.pt")) == 0


@pytest.mark.slow
def test_killed_torchrun_resumes_to_the_same_model(two_processes, tmp_path_factory):
    """Both processes killed after epoch 1 (tests/launch.py as torchrun's script), then torchrun again."""
    d = copy_data(tmp_path_factory, "ddp-two-killed")
    e = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                        str(ROOT / "tests" / "launch.py"), "1", "s04_train_tower.py", "--data-dir", str(d), *S04,
                        "--wandb", "disabled"], cwd=ROOT, capture_output=True, text=True, env=e, timeout=300)
    assert r.returncode != 0 and (d / "s04_model.resume.pt").exists(), r.stderr[-2000:]
    r = torchrun("s04_train_tower.py", d, *S04, "--wandb", "disabled")
    assert "resuming at epoch 2" in r.stdout
    assert max_diff(weights(d / "s04_model.pt"), weights(two_processes[0] / "s04_model.pt")) == 0
    assert manifest(d / "s04_model.pt")["stats"]["val"] == manifest(two_processes[0] / "s04_model.pt")["stats"]["val"]


def _hard_negatives(d):
    """s07's input without s05/s06: the random triplets under s06's name, with a manifest."""
    import shutil
    from common.artifacts import write_manifest
    shutil.copyfile(d / "triplets.parquet", d / "hard_negatives.parquet")
    write_manifest(d / "hard_negatives.parquet", "s06_mine_hard_negatives.py", {})


S07 = ["--epochs", "2", "--batch-size", "32", "--init", "fresh", "--wandb", "disabled"]


@pytest.mark.slow
def test_s07_under_torchrun_and_resumed(tmp_path_factory):
    """s07 with 2 processes, and s07 in one process killed after its first epoch and run again:
    the same model (to float rounding: one process against two; s04's tests check resuming exactly)."""
    two, killed = (copy_data(tmp_path_factory, n) for n in ("s07-two", "s07-killed"))
    for d in (two, killed):
        _hard_negatives(d)
    r = torchrun("s07_train_w_hard_negatives.py", two, *S07)
    assert r.stdout.count("-> keeping") == 1
    assert manifest(two / "s07_model.pt")["stats"]["world_size"] == 2
    run_killed("s07_train_w_hard_negatives.py", killed, 1, *S07)
    assert (killed / "s07_model.resume.pt").exists() and not (killed / "best_model.pt").exists()
    r = run("s07_train_w_hard_negatives.py", killed, *S07)
    assert "resuming at epoch 2" in r.stdout
    assert not (killed / "s07_model.resume.pt").exists()
    assert max_diff(weights(two / "s07_model.pt"), weights(killed / "s07_model.pt")) < 1e-4
    assert manifest(two / "best_model.pt")["settings"] == manifest(killed / "best_model.pt")["settings"]
    assert manifest(two / "s07_model.pt")["stats"]["val"]["epoch"] == manifest(killed / "s07_model.pt")["stats"]["val"]["epoch"]


# ------------------------------------------------------------------ slow: resuming s04
@pytest.mark.slow
def test_killed_s04_resumes_to_the_same_model(one_process, tmp_path_factory):
    d = copy_data(tmp_path_factory, "ddp-killed")
    r = run_killed("s04_train_tower.py", d, 1, *S04, "--wandb", "disabled", env=ONE_THREAD)
    assert r.returncode == -9, r.stderr[-2000:]
    assert (d / "s04_model.resume.pt").exists()
    assert not (d / "s04_model.pt.manifest.json").exists(), "a killed run leaves no manifest"
    r = run("s04_train_tower.py", d, *S04, "--wandb", "disabled", env=ONE_THREAD)
    assert "resuming at epoch 2" in r.stdout and "epoch   1 " not in r.stdout
    got, want = manifest(d / "s04_model.pt"), manifest(one_process / "s04_model.pt")
    assert got["stats"]["val"] == want["stats"]["val"]
    assert [h["val_mrr@10"] for h in got["stats"]["history"]] == [h["val_mrr@10"] for h in want["stats"]["history"]]
    assert max_diff(weights(d / "s04_model.pt"), weights(one_process / "s04_model.pt")) == 0
    assert not (d / "s04_model.resume.pt").exists(), "the state is removed once the run is done"


@pytest.mark.slow
def test_other_settings_start_over(tmp_path_factory):
    d = copy_data(tmp_path_factory, "ddp-other")
    run_killed("s04_train_tower.py", d, 1, *S04, "--wandb", "disabled")
    assert (d / "s04_model.resume.pt").exists()
    r = run("s04_train_tower.py", d, "--epochs", "1", "--batch-size", "32", "--wandb", "disabled")
    assert "another run's" in r.stdout and "resuming" not in r.stdout and "epoch   1 " in r.stdout
    assert manifest(d / "s04_model.pt")["settings"]["epochs"] == "1"
    assert not (d / "s04_model.resume.pt").exists()
