"""MS MARCO v2.1's shape: its test split is unlabelled (every is_selected is -1 on the Hub), so
s04 selects on validation and s10 reports on validation (on the half that hybrid is not tuned
on), while the test split's passages still go into the index."""
import json

import pyarrow.parquet as pq
import pytest

from helpers import run

pytestmark = pytest.mark.slow


def test_v21_pipeline_reports_on_validation_and_indexes_the_test_passages(tmp_path):
    from common import synthetic
    syn = synthetic.write(tmp_path / "src", n_queries=200, seed=5, config="v2.1")
    sel = pq.read_table(tmp_path / "src" / "v2.1" / "test-00000-of-00001.parquet").to_pylist()
    assert {s for r in sel for s in r["passages"]["is_selected"]} == {-1}  # as the Hub has it
    d = tmp_path / "data"
    run("s00_combine_data.py", d, "--source", syn["dir"], "--config", "v2.1")
    run("s01_create_triplets.py", d)
    run("s02_tkn_ms_marco.py", d, "--glove", syn["glove"])
    run("s03_build_embedding_matrix.py", d, "--vectors", "glove")
    run("s04_train_tower.py", d, "--epochs", "2", "--batch-size", "64", "--distill", "0", "--wandb", "disabled")
    run("s05_encode_docs_to_chromadb.py", d)
    r = run("s10_evaluate.py", d, "--wandb", "disabled")
    assert "test split has no labelled questions" in r.stdout
    rep = json.loads((d / "reports" / "eval_validation.json").read_text())
    assert rep["split"] == "validation" and "half" in rep["questions"]
    val = [q for q in pq.read_table(d / "queries.parquet").to_pylist() if q["split"] == "validation"]
    assert 0 < rep["queries"] < len(val)  # one half reported, the other tuned hybrid
    test_pids = {p for q in pq.read_table(d / "queries.parquet").to_pylist() if q["split"] == "test"
                 for p in q["passage_ids"]}
    a = json.loads((d / "active_index.json").read_text())
    assert a["total"] == pq.ParquetFile(d / "passages.parquet").metadata.num_rows
    from common.index import store
    idx = store.open_index(d, a["name"])
    assert test_pids <= set(idx.row_ids.tolist())  # the unlabelled split's passages are searchable
    idx.close()
