import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
# the teacher's per-machine cache (s03's word vectors): the tests' own, not the user's
import tempfile  # noqa: E402
os.environ.setdefault("MSMARCO_SEARCH_CACHE", tempfile.mkdtemp(prefix="msmarco-search-cache-"))

SHARED_SAMPLE = ROOT.parent / "shared" / "msmarco-sample"


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory):
    """A small MS MARCO-shaped dataset in the Hugging Face layout, with a tiny GloVe file."""
    from common import synthetic
    d = tmp_path_factory.mktemp("synthetic")
    return synthetic.write(d, n_queries=400, seed=1)


def run(script, data, *args, check=True, input=None):
    """A stage as a subprocess, as a user runs it."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    r = subprocess.run([sys.executable, str(ROOT / script), "--data-dir", str(data), *args], cwd=ROOT,
                       capture_output=True, text=True, env=env, input=input, timeout=600)
    if check and r.returncode != 0:
        raise AssertionError(f"{script} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return r


@pytest.fixture(scope="session")
def pipeline(synthetic, tmp_path_factory):
    """s00 to s10 run once on the synthetic dataset (test_pipeline_e2e.py, test_beir.py)."""
    data = tmp_path_factory.mktemp("data")
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
    return data, out
