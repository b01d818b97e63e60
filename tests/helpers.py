"""Helpers the test files share: no tests and no fixtures here (the fixtures are in conftest.py).

- `run`: a stage as a subprocess, as a user runs it.
- `build_pipeline`: s00 to s10 in order on a synthetic dataset (conftest's `pipeline_base`).
- `copy_tree`, `snapshot`: copy a data folder for one test; tell whether a folder was written to.
- `base_data`, `copy_data`: the robustness tests' small folder (s00-s04), built once and copied.
- `bench_tool`: a script of bench/ loaded as a module (bench/ is not a package).
- `msmarco_row`: one row of MS MARCO in the Hugging Face layout, for hand-written sources.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def bench_tool(name: str):
    """bench/<name>.py as a module, loaded by path."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def run(script, data, *args, check=True, input=None, env=None, timeout=600):
    """`python <script> --data-dir <data> <args>` from the repository root; `env` adds variables.
    With check, a non-zero exit fails the test with the end of its output."""
    e = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    e.update(env or {})
    r = subprocess.run([sys.executable, str(ROOT / script), "--data-dir", str(data), *args], cwd=ROOT,
                       capture_output=True, text=True, env=e, input=input, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"{script} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return r


# ------------------------------------------------------------------ data folders
def build_pipeline(data: Path, synthetic: dict) -> dict:
    """Every stage, s00 to s10, in order on `synthetic` (common.synthetic.write's answer), into
    `data`; returns {stage: its CompletedProcess}. s09 is interactive: the tests run it themselves."""
    out = {}
    out["s00"] = run("s00_combine_data.py", data, "--source", synthetic["dir"])
    out["s01"] = run("s01_create_triplets.py", data)
    out["s02"] = run("s02_tkn_ms_marco.py", data, "--glove", synthetic["glove"])
    out["s03"] = run("s03_build_embedding_matrix.py", data)
    out["s04"] = run("s04_train_tower.py", data, "--epochs", "4", "--batch-size", "64")
    out["s05"] = run("s05_encode_docs_to_chromadb.py", data)
    out["s06"] = run("s06_mine_hard_negatives.py", data)
    out["s07"] = run("s07_train_w_hard_negatives.py", data, "--epochs", "2", "--batch-size", "64", "--wandb", "disabled")
    out["s08"] = run("s08_reencode_all.py", data)
    out["s10"] = run("s10_evaluate.py", data, "--wandb", "disabled")
    return out


def copy_tree(src: Path, dst: Path) -> Path:
    """A full copy of a data folder (times kept, as the stages' manifests are compared by content)."""
    shutil.copytree(src, dst, symlinks=True)
    return dst


def snapshot(d: Path) -> dict:
    """{relative path: (size, mtime_ns)} of every file under d."""
    return {str(p.relative_to(d)): (p.stat().st_size, p.stat().st_mtime_ns) for p in d.rglob("*") if p.is_file()}


ROBUST_QUERIES = 150


def base_data(tmp_path_factory) -> tuple[Path, dict]:
    """s00-s04 (one epoch) on a small synthetic set, made once per session (the robustness tests
    start from it); returns (folder, synthetic). Never written to: copy_data gives a copy."""
    from common import synthetic
    root = tmp_path_factory.getbasetemp() / "robust-base"
    data, src = root / "data", root / "src"
    if not (data / "s04_model.pt.manifest.json").exists():
        shutil.rmtree(root, ignore_errors=True)
        syn = synthetic.write(src, n_queries=ROBUST_QUERIES, seed=3)
        run("s00_combine_data.py", data, "--source", str(src))
        run("s01_create_triplets.py", data)
        run("s02_tkn_ms_marco.py", data, "--glove", syn["glove"], "--workers", "1")
        run("s03_build_embedding_matrix.py", data)
        run("s04_train_tower.py", data, "--epochs", "1", "--batch-size", "64", "--wandb", "disabled")
        # the teacher's targets for every training passage, in data/teacher/ for the copies: the tests
        # that distil (--out-dim 64, test_ddp's) then never wait for the teacher; the model is discarded
        run("s04_train_tower.py", data, "--epochs", "1", "--batch-size", "64", "--out-dim", "64",
            "--wandb", "disabled", "--out", "warm.pt")
        for f in data.glob("warm.pt*"):
            f.unlink()
    return data, {"dir": str(src), "glove": str(src / "glove.test.txt")}


def copy_data(tmp_path_factory, name: str) -> Path:
    """A fresh copy of base_data's folder in a new temporary directory named after `name`."""
    base, _ = base_data(tmp_path_factory)
    return copy_tree(base, tmp_path_factory.mktemp(name) / "data")


# ------------------------------------------------------------------ hand-written sources
def msmarco_row(query_id=1, query="what is alpha", texts=("alpha beta", "gamma delta"), selected=(1, 0), **kw):
    """A row of microsoft/ms_marco (common.synthetic.HF_SCHEMA); keywords replace whole fields."""
    r = {"answers": ["a"], "query": query, "query_id": query_id, "query_type": "description", "wellFormedAnswers": [],
         "passages": {"is_selected": list(selected), "passage_text": list(texts), "url": [""] * len(texts)}}
    r.update(kw)
    return r
