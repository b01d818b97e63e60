import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

SHARED_SAMPLE = ROOT.parent / "shared" / "msmarco-sample"


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory):
    """A small MS MARCO-shaped dataset in the Hugging Face layout, with a tiny GloVe file."""
    from common import synthetic
    d = tmp_path_factory.mktemp("synthetic")
    return synthetic.write(d, n_queries=400, seed=1)
