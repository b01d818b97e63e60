"""s00 on a source full of broken rows, and the atomic-write rules every stage relies on."""
import json
import os
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from common import synthetic
from common.artifacts import atomic_path, manifest_path, require, StageError, write_manifest
from helpers import msmarco_row as row, run


def test_s00_counts_every_kind_of_broken_row(tmp_path):
    src = tmp_path / "src" / "v1.1"
    src.mkdir(parents=True)
    P = lambda texts, sel: {"is_selected": sel, "passage_text": texts, "url": None}
    train = [
        row(),
        row(query_id=None),                                          # missing id
        row(query_id=2, query=None),                                 # missing query
        row(query_id=3, query="   "),                                # empty query
        row(query_id=4, passages=None),                              # null passage struct
        row(query_id=5, passages=P([], [])),                         # empty passage list
        row(query_id=6, passages=P(["one", "two", "three"], [1])),   # mismatched lengths
        row(query_id=7, passages=P(["", None, "fine text"], [0, 0, 1])),  # empty / null texts
        row(query_id=8, passages=P(["long " * 10_000], [1])),        # very long passage
        row(query_id=1, query="a duplicate id"),                     # duplicate query id
        row(query_id=9, query="donâ€™t stop", passages=P(["cafÃ© \x00 menu"], [1])),  # mojibake, control
        row(query_id=10, answers=None, query_type=None),
    ]
    pq.write_table(pa.Table.from_pylist(train, schema=synthetic.HF_SCHEMA), src / "train-00000-of-00001.parquet")
    # another split with text stored as bytes, some not valid UTF-8, and no passages column at all
    bad = pa.table({"query_id": pa.array([20, 21, 22], pa.int64()),
                    "query": pa.array([b"caf\xe9 au lait", b"\xff\xfe broken", b"fine query"], pa.binary())})
    pq.write_table(bad, src / "validation-00000-of-00001.parquet")
    data = tmp_path / "data"
    r = run("s00_combine_data.py", data, "--source", str(src.parent))
    assert "Traceback" not in r.stderr
    rep = json.loads((data / "queries.parquet.manifest.json").read_text())["stats"]["counts"]
    for k in ("missing_query_id", "empty_query", "no_passages", "mismatched_passage_lists", "empty_passage",
              "long_passage_truncated", "duplicate_query_id", "repaired_text"):
        assert rep.get(k, 0) >= 1, (k, rep)
        assert k in r.stdout
    q = pq.read_table(data / "queries.parquet").to_pylist()
    assert sorted(x["query_id"] for x in q) == [1, 4, 5, 6, 7, 8, 9, 10, 20, 21, 22]
    by = {x["query_id"]: x for x in q}
    assert by[9]["query"] == "don't stop" and by[20]["query"] == "café au lait"
    assert len(by[6]["passage_ids"]) == 3 and by[6]["is_selected"] == [1, 0, 0]
    texts = pq.read_table(data / "passages.parquet")["text"].to_pylist()
    assert any(t.startswith("café") and t.endswith("menu") and "\x00" not in t for t in texts)
    assert max(len(t) for t in texts) <= 20_000 and all(t.strip() for t in texts)


def test_s00_truncated_source_file_is_one_line(tmp_path):
    src = tmp_path / "src" / "v1.1"
    src.mkdir(parents=True)
    (src / "train-00000-of-00001.parquet").write_bytes(b"PAR1 truncated")
    r = run("s00_combine_data.py", tmp_path / "data", "--source", str(src.parent), check=False)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "re-download" in r.stderr
    assert not (tmp_path / "data" / "queries.parquet").exists()


# ------------------------------------------------------------------ atomic writes
def test_failed_write_keeps_previous_file(tmp_path):
    f = tmp_path / "out.bin"
    f.write_text("good")
    with pytest.raises(RuntimeError):
        with atomic_path(f) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert f.read_text() == "good" and [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_new_output_never_sits_under_old_manifest(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    f = tmp_path / "queries.parquet"
    pq.write_table(pa.table({"v": [1]}), f)  # (require() checks the format: a real Parquet file)
    write_manifest(f, "s00_combine_data.py")
    require(f)
    with atomic_path(f) as tmp:  # a stage that dies right after this, before its new manifest
        pq.write_table(pa.table({"v": [2]}), tmp)
    assert not manifest_path(f).exists()
    with pytest.raises(StageError, match="re-run s00_combine_data.py"):
        require(f)


def test_tmp_files_of_killed_runs_are_cleaned(tmp_path):
    f = tmp_path / "x.parquet"
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()  # a pid that is gone
    dead = tmp_path / f".x.parquet.tmp-{p.pid}-abcdef"
    alive = tmp_path / f".x.parquet.tmp-{os.getppid()}-abcdef"
    dead.write_text("half")
    alive.write_text("someone else's")
    with atomic_path(f) as tmp:
        tmp.write_text("ok")
    assert not dead.exists() and alive.exists() and f.read_text() == "ok"
