"""Shared helpers for the robustness tests (no tests here): run a script as a subprocess, and a
small prepared data folder (s00-s04 on a synthetic set) built once per session and copied."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

N_QUERIES = 150


def run(script, data, *args, check=True, input=None, env=None, timeout=300):
    e = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1", WANDB_MODE="disabled")
    e.update(env or {})
    r = subprocess.run([sys.executable, str(ROOT / script), "--data-dir", str(data), *args], cwd=ROOT,
                       capture_output=True, text=True, env=e, input=input, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"{script} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return r


def base_data(tmp_path_factory) -> tuple[Path, dict]:
    """s00-s04 (one epoch) on a small synthetic set, made once per session; returns (folder, synthetic)."""
    from common import synthetic
    root = tmp_path_factory.getbasetemp() / "robust-base"
    data, src = root / "data", root / "src"
    if not (data / "s04_model.pt.manifest.json").exists():
        shutil.rmtree(root, ignore_errors=True)
        syn = synthetic.write(src, n_queries=N_QUERIES, seed=3)
        run("s00_combine_data.py", data, "--source", str(src))
        run("s01_create_triplets.py", data)
        run("s02_tkn_ms_marco.py", data, "--glove", syn["glove"], "--workers", "1")
        run("s03_build_embedding_matrix.py", data)
        run("s04_train_tower.py", data, "--epochs", "1", "--batch-size", "64", "--wandb", "disabled")
    return data, {"dir": str(src), "glove": str(src / "glove.test.txt")}


def copy_data(tmp_path_factory, name: str) -> Path:
    base, _ = base_data(tmp_path_factory)
    d = tmp_path_factory.mktemp(name) / "data"
    shutil.copytree(base, d)
    return d
