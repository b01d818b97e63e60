"""Damaged files and nonsense options: one line that says what to do, never a traceback.

Each file a stage wrote is cut to half its size, replaced by 4 KB of random bytes, replaced by a
valid file of the wrong shape, or deleted, and a stage that reads it is run in-process (as its
`python sNN_...py` would run it: argparse, main(), run_main's one-line errors). It must end with
a non-zero exit and one line on stderr that names a script, or (where the file is optional) answer
normally; no other file of the data folder may change. bench/damage.py runs the same cases as
subprocesses on a real pipeline's folder.
"""
import importlib
import json
import os
import pickle
import re
import shutil
import sys

import numpy as np
import pytest

import helpers  # noqa: F401  (puts the repo on sys.path)

# file (INDEX: the active index's name) -> the stage that reads it
S09 = ["active_index.json", "indexes/INDEX.json", "indexes/INDEX.ids.npy", "indexes/INDEX.vectors.npy",
       "indexes/INDEX.faiss", "indexes/INDEX.query_table.npy", "indexes/INDEX.query_weights.npz",
       "bm25/source.json", "bm25/passage_ids.npy", "bm25/data.csc.index.npy", "bm25/params.index.json",
       "reports/hybrid.json", "vocab.pkl", "vocab.pkl.manifest.json", "passages.parquet"]
S04 = ["queries.parquet", "triplets.parquet", "passages_tok.parquet", "queries_tok.parquet", "embeddings.npy",
       "embeddings.npy.manifest.json", "triplets.parquet.manifest.json"]
S05 = ["s04_model.pt", "s04_model.pt.manifest.json"]
READER = {**{f: "s09" for f in S09}, **{f: "s04" for f in S04}, **{f: "s05" for f in S05}}
ARGS = {"s09": ("s09_query_retrieve", ["--query", "what is a corporation", "-k", "3", "--mode", "hybrid"]),
        "s04": ("s04_train_tower", ["--epochs", "1", "--batch-size", "64", "--wandb", "disabled", "--out", "x.pt"]),
        "s05": ("s05_encode_docs_to_chromadb", ["--no-activate", "--device", "cpu"])}
# absent is normal for these: s09 answers without them (hybrid's default weights; BM25 built anew,
# by rename, when data/bm25 has no stamp); a complete index that lacks one of its files is damaged
OPTIONAL = {"reports/hybrid.json": (), "bm25/source.json": ("bm25/",)}
DAMAGES = ("cut", "garbage", "shape", "deleted")
SHAPED = (".npy", ".parquet", ".json", ".pkl", ".npz")
CASES = [(f, how) for f in READER for how in DAMAGES
         if not (how == "shape" and not f.endswith(SHAPED)) and not (f.endswith(".manifest.json") and how == "deleted")]


def damage(path, how):
    """Replace the file (its copy here is a hard link to the pipeline's: never write into it)."""
    raw = path.read_bytes()
    path.unlink()
    if how == "cut":
        path.write_bytes(raw[:len(raw) // 2])
    elif how == "garbage":
        path.write_bytes(np.random.default_rng(0).bytes(4096))
    elif how == "shape":
        src = path.with_name(path.name + ".orig")
        src.write_bytes(raw)
        try:
            if path.suffix == ".npy":
                a = np.load(src)
                with open(path, "wb") as f:
                    np.save(f, a[:-1])
            elif path.suffix == ".parquet":
                import pyarrow.parquet as pq
                t = pq.read_table(src)
                pq.write_table(t.slice(0, t.num_rows // 2).drop_columns(t.column_names[-1:]), path)
            elif path.suffix == ".json":
                path.write_text(json.dumps([json.loads(raw)]))
            elif path.suffix == ".pkl":
                path.write_bytes(pickle.dumps(["not", "a", "vocabulary"]))
            elif path.suffix == ".npz":
                with open(path, "wb") as f:
                    np.savez(f, other=np.zeros(3))
        finally:
            src.unlink()


def snapshot(d):
    return {str(p.relative_to(d)): (p.stat().st_ino, p.stat().st_size, p.stat().st_mtime_ns)
            for p in d.rglob("*") if p.is_file() and "wandb" not in p.parts and p.name != "writer.lock"}


@pytest.fixture(scope="module")
def linked(pipeline_base, tmp_path_factory):
    """The session's pipeline folder, hard-linked (data/chroma and the writer lock copied: a lock
    file is written)."""
    src, _ = pipeline_base
    dst = tmp_path_factory.mktemp("damage") / "data"

    def copy(s, d):
        rel = os.path.relpath(s, src)
        return shutil.copy2(s, d) if "chroma" in rel.split(os.sep)[0] or rel.endswith("writer.lock") else os.link(s, d)
    shutil.copytree(src, dst, copy_function=copy, ignore=shutil.ignore_patterns("wandb", "external"))
    name = json.loads((dst / "active_index.json").read_text())["name"]
    return src, dst, name


def run_stage(reader, data, monkeypatch, capsys):
    """A stage in-process: (exit code, stdout, stderr)."""
    from common.artifacts import run_main
    mod_name, args = ARGS[reader]
    mod = importlib.import_module(mod_name)
    monkeypatch.setattr(sys, "argv", [f"{mod_name}.py", "--data-dir", str(data), *args])
    capsys.readouterr()
    code = 0
    try:
        run_main(mod.main)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("rel,how", CASES, ids=[f"{f}-{h}" for f, h in CASES])
def test_damaged_file_is_one_line_naming_a_script(linked, rel, how, monkeypatch, capsys):
    src, d, name = linked
    rel = rel.replace("INDEX", name)
    path = d / rel
    assert path.exists(), f"the pipeline wrote no {rel}"
    damage(path, how)
    before = snapshot(d)
    before.pop(rel, None)
    after = {}
    try:
        code, out, err = run_stage(READER[rel.replace(name, "INDEX")], d, monkeypatch, capsys)
        after = snapshot(d)
    finally:
        for k in [rel] + [k for k, v in before.items() if after.get(k) != v]:  # put the pipeline's files back
            (d / k).unlink(missing_ok=True)
            os.link(src / k, d / k)
    assert "Traceback" not in err + out, err[-2000:]
    optional = OPTIONAL.get(rel.replace(name, "INDEX")) if how == "deleted" else None
    touched = [k for k, v in before.items() if after.get(k) != v and not k.startswith(optional or ("-",))]
    assert not touched, f"changed: {touched}"
    if optional is not None:
        assert code == 0, err
        return
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code != 0 and len(lines) == 1, (code, err, out[-500:])
    assert re.search(r"s\d\d_\w+\.py", lines[0]), lines[0]  # the script to re-run
    assert rel.split("/")[-1].split(".manifest")[0] in lines[0] or "bm25" in lines[0], lines[0]  # the file


def test_planted_pickle_never_runs(tmp_path):
    """A vocab.pkl that would run code when unpickled is refused before anything runs."""
    from common.artifacts import StageError
    from common.vocab import Vocab
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))
    (tmp_path / "vocab.pkl").write_bytes(pickle.dumps({"words": ["<pad>", "<unk>"], "x": Evil()}))
    with pytest.raises(StageError, match="refused.*s02_tkn_ms_marco.py"):
        Vocab.load(tmp_path / "vocab.pkl")
    assert not marker.exists()
    v = Vocab(["<pad>", "<unk>", "a"], "g", np.arange(3), np.arange(3), 5)
    v.save(tmp_path / "ok.pkl")
    w = Vocab.load(tmp_path / "ok.pkl")
    assert w.words == v.words and np.array_equal(w.df, v.df) and w.n_passages == 5


def test_manifest_records_size_and_hash(tmp_path):
    from common.artifacts import StageError, require, write_manifest
    f = tmp_path / "triplets.parquet"
    import pyarrow as pa
    import pyarrow.parquet as pq
    pq.write_table(pa.table({"a": list(range(100))}), f)
    m = write_manifest(f, "s01_create_triplets.py")
    assert m["bytes"] == f.stat().st_size and len(m["sha256"]) == 64
    assert require(f)["fingerprint"] == m["fingerprint"]
    raw = f.read_bytes()
    f.write_bytes(raw[:-9] + bytes([raw[-9] ^ 1]) + raw[-8:])  # same size, one bit changed
    with pytest.raises(StageError, match="content hash.*s01_create_triplets.py"):
        require(f)


# ------------------------------------------------------------------ options
BAD_OPTIONS = [
    ("s04_train_tower", ["--batch-size", "0"], "--batch-size"), ("s04_train_tower", ["--lr", "-1"], "--lr"),
    ("s04_train_tower", ["--epochs", "0"], "--epochs"), ("s04_train_tower", ["--temperature", "0"], "--temperature"),
    ("s04_train_tower", ["--lex-dim", "-1"], "--lex-dim"), ("s04_train_tower", ["--val-pool", "0"], "--val-pool"),
    ("s04_train_tower", ["--lr", "nan"], "--lr"), ("s07_train_w_hard_negatives", ["--patience", "-1"], "--patience"),
    ("s09_query_retrieve", ["-k", "0"], "-k"), ("s09_query_retrieve", ["-k", "1001"], "-k"),
    ("s09_query_retrieve", ["--width", "0"], "--width"), ("s05_encode_docs_to_chromadb", ["--shards", "-1"], "--shards"),
    ("s05_encode_docs_to_chromadb", ["--ef-search", "-5"], "--ef-search"),
    ("s08_reencode_all", ["--depth", "0"], "--depth"), ("s08_reencode_all", ["--chroma-port", "0"], "--chroma-port"),
    ("s06_mine_hard_negatives", ["--skip", "30", "--depth", "30"], "--skip"),
    ("s10_evaluate", ["--bm25-b", "1.5"], "--bm25-b"), ("s02_tkn_ms_marco", ["--workers", "0"], "--workers"),
    ("s01_create_triplets", ["--negs-per-pos", "0"], "--negs-per-pos"), ("s00_combine_data", ["--batch-rows", "x"], "--batch-rows"),
]


@pytest.mark.parametrize("script,args,option", BAD_OPTIONS, ids=[f"{s[:3]}{' '.join(a)}" for s, a, _ in BAD_OPTIONS])
def test_nonsense_option_is_one_line_naming_it(script, args, option, monkeypatch, capsys, tmp_path):
    mod = importlib.import_module(script)
    monkeypatch.setattr(sys, "argv", [f"{script}.py", "--data-dir", str(tmp_path), *args])
    with pytest.raises(SystemExit) as e:
        mod.main()
    err = capsys.readouterr().err
    assert e.value.code == 2 and len(err.strip().splitlines()) == 1, err
    assert f"argument {option}" in err and "Traceback" not in err, err


def test_zero_still_means_off_or_auto_and_help_says_so(monkeypatch, capsys):
    from common import cli
    assert cli.nonneg_int_zero_means("off")("0") == 0 and cli.int_range(1, 1000)("1000") == 1000
    for script, words in (("s04_train_tower", ["0: off", "0: never"]), ("s05_encode_docs_to_chromadb", ["0: one per core", "0: 300"])):
        mod = importlib.import_module(script)
        monkeypatch.setattr(sys, "argv", [f"{script}.py", "--help"])
        with pytest.raises(SystemExit):
            mod.main()
        out = " ".join(capsys.readouterr().out.split())
        for w in words:
            assert w in out, (script, w)
