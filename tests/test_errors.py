"""Typed stage errors: what each carries, the one line it prints, and where the library raises them."""
import json

import numpy as np
import pytest

from common import artifacts
from common.artifacts import (BadSetting, DamagedInput, LineageMismatch, MissingInput, StageError, check_lineage,
                              damaged, require, run_main, write_manifest)
from common.stages import script


def test_missing_input_names_the_producer(tmp_path):
    e = MissingInput(tmp_path / "vocab.pkl")
    assert isinstance(e, StageError)
    assert e.producer == script("s02") and e.path == tmp_path / "vocab.pkl"
    assert str(e) == f"{tmp_path / 'vocab.pkl'} not found: run {script('s02')} first"
    assert str(MissingInput(tmp_path / "x.bin", "s99.py", "the pool")) == f"{tmp_path / 'x.bin'} not found: run s99.py first (the pool)"
    with pytest.raises(MissingInput) as r:
        require(tmp_path / "embeddings.npy")
    assert str(r.value) == f"{tmp_path / 'embeddings.npy'} not found: run {script('s03')} first"


def test_damaged_input_and_damaged(tmp_path):
    p = tmp_path / "passages_tok.parquet"
    e = damaged(p, "cut short")
    assert isinstance(e, DamagedInput) and isinstance(e, StageError)
    assert (e.path, e.what, e.producer) == (p, "cut short", script("s02"))
    assert str(e) == f"{p} is cut short: re-run {script('s02')}"
    assert str(DamagedInput(p, "empty", "s99.py")) == f"{p} is empty: re-run s99.py"
    p.write_bytes(b"PAR1 not really")
    with pytest.raises(DamagedInput, match="has no manifest"):
        require(p)
    (tmp_path / "hybrid.json").write_text("[1, 2]")
    with pytest.raises(DamagedInput, match="not what this stage writes"):
        artifacts.read_json_artifact(tmp_path / "hybrid.json")
    np.save(tmp_path / "embeddings.npy", np.zeros((3, 2), np.float32))
    with pytest.raises(DamagedInput, match=r"the wrong shape \(3, 2\)"):
        artifacts.load_npy_artifact(tmp_path / "embeddings.npy", shape=(3, 4))


def test_lineage_mismatch_carries_both_fingerprints(tmp_path):
    for n in ("a.bin", "b.bin"):
        (tmp_path / n).write_bytes(b"x")
    parent = write_manifest(tmp_path / "a.bin", "s01.py")
    child = write_manifest(tmp_path / "b.bin", "s02.py", inputs={"a": "0123"})
    with pytest.raises(LineageMismatch) as r:
        check_lineage(child, "a", parent, "s02.py")
    e = r.value
    assert (e.child, e.parent, e.got, e.want, e.rerun) == ("b.bin", "a.bin", "0123", parent["fingerprint"], "s02.py")
    assert str(e) == f"b.bin was made from another a.bin (0123 != {parent['fingerprint']}): re-run s02.py"


def test_a_prepared_folder_is_s10s(tmp_path):
    ext = tmp_path / "external" / "beir-x"
    ext.mkdir(parents=True)
    assert artifacts.producer_of(ext / "vocab.pkl") == script("s02")
    (ext / artifacts.PREPARED).write_text(json.dumps({"vocab": "f"}))
    assert artifacts.producer_of(ext / "vocab.pkl") == script("s10")
    assert artifacts.producer_of(ext / "indexes" / "x.npy") == script("s10")
    assert artifacts.prepared_for(ext, {"vocab": "f"}) and not artifacts.prepared_for(ext, {"vocab": "g"})
    assert artifacts.prepared_for(ext, {"vocab": "f", "limits": 1}, defaults={"limits": 1})
    (ext / artifacts.PREPARED).write_text("{cut")
    assert not artifacts.prepared_for(ext, {"vocab": "f"})


@pytest.mark.parametrize("err", [MissingInput("data/vocab.pkl"), DamagedInput("data/x.npy", "empty", "s03.py"),
                                 BadSetting("--rel-level must be 1 or more"), StageError("plain")])
def test_run_main_prints_any_stage_error_as_one_line(err, capsys):
    def main():
        raise err
    with pytest.raises(SystemExit) as r:
        run_main(main)
    assert r.value.code == 2
    out = capsys.readouterr()
    assert out.err == f"error: {err}\n" and out.out == ""


def test_load_model_errors_are_typed(tmp_path):
    from common.encode import load_model
    with pytest.raises(MissingInput, match=f"run {script('s07')} first"):
        load_model(tmp_path / "s07_model.pt", "fp", "cpu")
    (tmp_path / "other.pt").write_bytes(b"not a zip")
    with pytest.raises(DamagedInput, match=f"other.pt is not a torch checkpoint: re-run {script('s04')}"):
        load_model(tmp_path / "other.pt", "fp", "cpu")
