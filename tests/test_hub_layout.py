"""s00's Hugging Face path (datasets.load_dataset on the repo id), exercised offline on a local
folder laid out exactly as the microsoft/ms_marco repository: README.md with its `configs` YAML and
v1.1/{split}-00000-of-00001.parquet."""
import os
import shutil
import subprocess
import sys

import pyarrow.parquet as pq

from helpers import ROOT

README = """---
configs:
- config_name: v1.1
  data_files:
  - split: validation
    path: v1.1/validation-*
  - split: train
    path: v1.1/train-*
  - split: test
    path: v1.1/test-*
---
# ms_marco (local copy for tests)
"""


def test_s00_reads_a_hub_repo_layout_through_datasets(synthetic, tmp_path):
    repo = tmp_path / "ms_marco"
    shutil.copytree(os.path.join(synthetic["dir"], "v1.1"), repo / "v1.1")
    (repo / "README.md").write_text(README)
    data = tmp_path / "data"
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_CACHE=str(tmp_path / "hf-cache"))
    r = subprocess.run([sys.executable, str(ROOT / "s00_combine_data.py"), "--data-dir", str(data),
                        "--hub-repo", str(repo)], cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    q = pq.read_table(data / "queries.parquet")
    n = sum(pq.ParquetFile(f).metadata.num_rows for f in (repo / "v1.1").glob("*.parquet"))
    assert q.num_rows == n and set(q["split"].to_pylist()) == {"train", "validation", "test"}


def test_hub_unreachable_is_one_line(tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_CACHE=str(tmp_path / "hf-cache"))
    r = subprocess.run([sys.executable, str(ROOT / "s00_combine_data.py"), "--data-dir", str(tmp_path / "d")],
                       cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "--source" in r.stderr, r.stderr[-2000:]
