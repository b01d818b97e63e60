"""Fixtures only; the helpers the test files share are in helpers.py.

`pipeline_base` runs every stage once per session on a small synthetic set and is never written
to; `pipeline` gives each test its own copy of that folder, so no test sees another's changes.
Tests that use either are marked `slow` here (the first one pays for the whole pipeline, ~1 min)."""
import os
import tempfile

import pytest

import helpers  # noqa: F401  (puts the repository on sys.path)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
# the teacher's per-machine cache (s03's word vectors): the tests' own, not the user's
os.environ.setdefault("MSMARCO_SEARCH_CACHE", tempfile.mkdtemp(prefix="msmarco-search-cache-"))

PIPELINE_FIXTURES = {"pipeline", "pipeline_base"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if PIPELINE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory):
    """A small MS MARCO-shaped dataset in the Hugging Face layout, with a tiny GloVe file."""
    from common import synthetic
    d = tmp_path_factory.mktemp("synthetic")
    return synthetic.write(d, n_queries=400, seed=1)


@pytest.fixture(scope="session")
def pipeline_base(synthetic, tmp_path_factory):
    """(data folder, {stage: CompletedProcess}): s00 to s10 run once per session, in order, on the
    synthetic dataset. Read it, never write to it (take `pipeline` for that): a file that changed
    by the end of the session fails the last test that used it."""
    data = tmp_path_factory.mktemp("pipeline") / "data"
    out = helpers.build_pipeline(data, synthetic)
    before = helpers.snapshot(data)
    yield data, out
    after = helpers.snapshot(data)
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert not changed, f"a test wrote into the shared pipeline folder {data}: {changed[:10]}"


@pytest.fixture
def pipeline(pipeline_base, tmp_path):
    """(data folder, {stage: CompletedProcess}): this test's own copy of `pipeline_base`."""
    src, out = pipeline_base
    return helpers.copy_tree(src, tmp_path / "pipeline" / "data"), out
