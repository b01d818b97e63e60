"""Killed stages (SIGKILL part-way), stale inputs, two processes on one embedded Chroma store,
and odd queries to s09: nothing is lost, and every failure says what to do in one line."""
import json
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest

from helpers import ROOT, copy_data, copy_tree, run
from launch import run_killed

pytestmark = pytest.mark.slow  # each test needs s00-s05 (a module's ~20 s)

SMALL = ("--encode-batch", "64", "--write-batch", "32", "--save-every", "64")  # kill after N writes / saves


def open_collection(data, name):
    """A fresh embedded client (Chroma caches one per path inside a process: drop it first)."""
    import chromadb
    from chromadb.api.client import SharedSystemClient
    from chromadb.config import Settings
    SharedSystemClient.clear_system_cache()
    c = chromadb.PersistentClient(path=str(data / "chroma"), settings=Settings(anonymized_telemetry=False))
    return c.get_collection(name, embedding_function=None)


def check_complete(data, name):
    """The right count, no duplicates, exactly the passages of passages.parquet, each findable."""
    st = json.loads((data / "indexes" / f"{name}.json").read_text())
    if st.get("backend") == "faiss":
        return check_complete_faiss(data, name, st)
    want = set(pq.read_table(data / "passages.parquet", columns=["passage_id"])["passage_id"].to_pylist())
    col = open_collection(data, name)
    assert col.count() == len(want)
    got = col.get(include=["embeddings"])
    ids = [int(x) for x in got["ids"]]
    assert len(ids) == len(set(ids)) == len(want) and set(ids) == want
    r = col.query(query_embeddings=np.asarray(got["embeddings"], np.float32), n_results=3, include=[])
    found = sum(i in row for i, row in zip(got["ids"], r["ids"]))
    assert found >= 0.99 * len(ids), f"{found}/{len(ids)} passages find themselves"
    # the full vectors (written in place, resumed with the collection): every row filled, and each
    # is the one Chroma's short vector was cut from
    from common.index import vectors
    full = vectors.FullVectors(data, name).get(ids)
    np.testing.assert_allclose(np.linalg.norm(full, axis=1), 1, atol=2e-3)
    short = vectors.index_vectors(full, st["out_dim"], st["lex_dim"], st["index_dim"])
    np.testing.assert_allclose(short, np.asarray(got["embeddings"], np.float32), atol=3e-3)


def check_complete_faiss(data, name, st):
    """The graph holds every row once, its labels map to exactly the passages of passages.parquet,
    each passage finds itself through it, and no partial graph is left."""
    import faiss
    from common.index import faiss_graph, store, vectors
    ids = pq.read_table(data / "passages.parquet", columns=["passage_id"])["passage_id"].to_numpy()
    g = faiss.read_index(str(faiss_graph.graph_path(data, name)))
    assert g.ntotal == len(ids) == st["total"]
    assert not faiss_graph.partial_path(data, name).exists()
    assert sorted(vectors.FullVectors(data, name).row_ids.tolist()) == sorted(ids.tolist())
    full = vectors.FullVectors(data, name).get(ids)
    np.testing.assert_allclose(np.linalg.norm(full, axis=1), 1, atol=2e-3)  # every row of the file filled
    idx = store.open_index(data, name)
    got, _ = idx.search_ids(full, 3)
    found = sum(int(i) in row.tolist() for i, row in zip(ids, got))
    assert found >= 0.99 * len(ids), f"{found}/{len(ids)} passages find themselves"


def active(data):
    return json.loads((data / "active_index.json").read_text())


def make_other_checkpoint(data, out="best_model.pt"):
    """A second model (perturbed s04 weights) with a manifest, as s07 would leave it."""
    import torch
    from common.artifacts import write_manifest
    from common.encode import load_embeddings
    from common.model import TwoTowerModel
    ck = torch.load(data / "s04_model.pt", map_location="cpu", weights_only=True)
    m = TwoTowerModel.from_checkpoint(ck, embeddings=load_embeddings(data, ck["config"].get("embeddings")))
    with torch.no_grad():
        for p in m.parameters():
            if p.requires_grad:  # the frozen word table is the file's, not the checkpoint's
                p.add_(0.01 * torch.randn_like(p))
    torch.save(m.checkpoint(vocab_fingerprint=ck["vocab_fingerprint"], stage="s07"), data / out)
    write_manifest(data / out, "s07_train_w_hard_negatives.py", {"winner": "s07"})
    return m.fingerprint()


@pytest.fixture(scope="module")
def resumed_base(tmp_path_factory):
    """s00-s04, then s05 killed after 4 written batches, then s05 again; built once for this file
    and never written to (each test takes `data`, a copy)."""
    d = copy_data(tmp_path_factory, "kill")
    killed = run_killed("s05_encode_docs_to_chromadb.py", d, 4, *SMALL)
    resumed = run("s05_encode_docs_to_chromadb.py", d, *SMALL)
    return d, killed, resumed


@pytest.fixture
def data(resumed_base, tmp_path, request):
    """(folder, killed s05, resumed s05): this test's own copy of `resumed_base`. Parametrised
    indirectly, the copy also holds: "best_model", a second checkpoint (as s07 leaves one);
    "chroma", that and a complete Chroma index of it, active."""
    src, killed, resumed = resumed_base
    d = copy_tree(src, tmp_path / "data")
    state = getattr(request, "param", None)
    assert state in (None, "best_model", "chroma"), state
    if state in ("best_model", "chroma"):
        make_other_checkpoint(d)
    if state == "chroma":
        run("s08_reencode_all.py", d, *SMALL, "--backend", "chroma")
    return d, killed, resumed


def test_s05_killed_then_rerun_completes(data):
    d, killed, resumed = data
    assert killed.returncode == -9
    assert "resuming" in resumed.stdout
    a = active(d)
    assert a["complete"] and a["total"] == pq.ParquetFile(d / "passages.parquet").metadata.num_rows
    check_complete(d, a["name"])
    # no temporary files left behind by the killed run once the stage ran again
    assert not [p for p in d.rglob(".*.tmp-*")]


def test_s06_killed_resumes_at_its_last_search_batch(data):
    """s06 killed after its 2nd search batch resumes there (the batches kept are not searched
    again) and writes the same hard negatives as an uninterrupted run; its chunks are gone after."""
    d, _, _ = data
    run("s06_mine_hard_negatives.py", d, "--query-batch", "20")
    want = pq.read_table(d / "hard_negatives.parquet")
    (d / "hard_negatives.parquet").unlink()
    r = run_killed("s06_mine_hard_negatives.py", d, 2, "--query-batch", "20")
    assert r.returncode == -9 and len(list((d / "hard_negatives.parquet.chunks").glob("chunk-*.npz"))) == 2
    r = run("s06_mine_hard_negatives.py", d, "--query-batch", "20")
    assert "s06 search batches: resuming, 2 of" in r.stdout
    assert pq.read_table(d / "hard_negatives.parquet").equals(want)
    assert not (d / "hard_negatives.parquet.chunks").exists()


def test_s10_killed_resumes_at_its_last_chunk_of_questions(data):
    """s10 keeps each system's run in chunks of questions: killed after its 3rd chunk, a re-run
    resumes with those 3 kept and reports the figures of an uninterrupted run; the chunks are
    gone once the reports are written."""
    d, _, _ = data
    rep = d / "reports" / "eval_test.json"
    figures = lambda: [{k: v for k, v in r.items() if k != "run_file"} for r in json.loads(rep.read_text())["full_pool"]]
    run("s10_evaluate.py", d, "--wandb", "disabled", "--chunk-queries", "4")
    want = figures()
    rep.unlink()
    r = run_killed("s10_evaluate.py", d, 3, "--wandb", "disabled", "--chunk-queries", "4")
    assert r.returncode == -9 and not rep.exists()
    kept = sorted((d / "reports" / "s10.chunks").rglob("chunk-*.npz"))
    assert len(kept) == 3
    r = run("s10_evaluate.py", d, "--wandb", "disabled", "--chunk-queries", "4")
    import re
    assert sum(int(k) for k in re.findall(r"resuming, (\d+) of \d+ chunks", r.stdout)) == 3, r.stdout
    assert figures() == want
    assert not (d / "reports" / "s10.chunks").exists()


def test_s08_killed_keeps_old_index_then_switches(data):
    d, _, _ = data
    old = active(d)
    fp = make_other_checkpoint(d)
    r = run_killed("s08_reencode_all.py", d, 3, *SMALL)
    assert r.returncode == -9
    assert active(d) == old  # still the old, complete collection
    q = pq.read_table(d / "queries.parquet", columns=["query"])["query"][0].as_py()
    r = run("s09_query_retrieve.py", d, "--query", q, "-k", "3")
    assert " 1. " in r.stdout and "Traceback" not in r.stderr
    r = run("s08_reencode_all.py", d, *SMALL)
    assert "resuming" in r.stdout
    new = active(d)
    assert new["name"] != old["name"] and new["model_fingerprint"] == fp and new["complete"]
    check_complete(d, new["name"])
    check_complete(d, old["name"])  # kept, untouched


@pytest.mark.parametrize("data", ["best_model"], indirect=True)  # s08 indexes data/best_model.pt
def test_chroma_build_killed_then_rerun_completes(data):
    """The same with --backend chroma: killed after 3 written batches, resumed, complete."""
    d, _, _ = data
    r = run_killed("s08_reencode_all.py", d, 3, *SMALL, "--backend", "chroma")
    assert r.returncode == -9
    r = run("s08_reencode_all.py", d, *SMALL, "--backend", "chroma")
    assert "resuming" in r.stdout
    a = active(d)
    assert a["backend"] == "chroma" and a["complete"]
    check_complete(d, a["name"])


HOLDER = r"""
import sys, time
sys.path.insert(0, sys.argv[2])
from pathlib import Path
import numpy as np
from common.index import chroma_graph
c = chroma_graph.client(Path(sys.argv[1]), writer=True)
col = chroma_graph.get_collection(c, "scratch") or chroma_graph.create_collection(c, "scratch")
print("ready", flush=True)
rng = np.random.default_rng(0)
for i in range(10_000):  # keep writing, as s08 would, until killed
    col.upsert(ids=[str(i % 500)], embeddings=rng.normal(size=(1, 8)).astype(np.float32))
    time.sleep(0.01)
"""


@pytest.mark.parametrize("data", ["chroma"], indirect=True)  # the active index is in the embedded store
def test_second_writer_refused_and_reader_still_answers(data):
    d, _, _ = data
    p = subprocess.Popen([sys.executable, "-c", HOLDER, str(d), str(ROOT)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "ready", p.stderr.read()
        r = run("s05_encode_docs_to_chromadb.py", d, check=False)
        assert r.returncode == 2 and "Traceback" not in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and "--chroma-host" in r.stderr
        q = pq.read_table(d / "queries.parquet", columns=["query"])["query"][1].as_py()
        r = run("s09_query_retrieve.py", d, "--query", q, "-k", "3")
        assert " 1. " in r.stdout and "warning:" in r.stderr and "--chroma-host" in r.stderr
    finally:
        p.kill()
        p.wait(timeout=30)
    # the lock went with its (killed) process
    from common.index import state
    assert state.writer_active(d / "indexes") is None


# ------------------------------------------------------------------ stale or mismatched inputs
def one_line_error(r, script):
    assert r.returncode == 2, (r.returncode, r.stdout[-500:], r.stderr[-2000:])
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert script in r.stderr, r.stderr


def test_checkpoint_from_another_vocabulary_refused(data):
    import torch
    d, _, _ = data
    ck = torch.load(d / "s04_model.pt", map_location="cpu", weights_only=True)
    ck["vocab_fingerprint"] = "0" * 16
    torch.save(ck, d / "alien_model.pt")
    one_line_error(run("s05_encode_docs_to_chromadb.py", d, "--checkpoint", "alien_model.pt", check=False),
                   "s04_train_tower.py")


def test_index_from_another_model_refused(data, tmp_path):
    import shutil
    d, _, _ = data
    a = active(d)
    try:
        shutil.copy(d / a["checkpoint"], tmp_path / "ck")
        shutil.copy(d / (a["checkpoint"] + ".manifest.json"), tmp_path / "ck.manifest")
        make_other_checkpoint(d, a["checkpoint"])  # the checkpoint changed since the index was built
        one_line_error(run("s09_query_retrieve.py", d, "--query", "what", check=False), "s08_reencode_all.py")
    finally:  # the checkpoint and its manifest (whose size and hash require() compares)
        shutil.copy(tmp_path / "ck", d / a["checkpoint"])
        shutil.copy(tmp_path / "ck.manifest", d / (a["checkpoint"] + ".manifest.json"))


def test_tokens_from_another_vocabulary_refused(data, tmp_path):
    d, _, _ = data
    mp = d / "passages_tok.parquet.manifest.json"
    keep = mp.read_text()
    try:
        m = json.loads(keep)
        m["inputs"]["vocab"] = "f" * 16
        mp.write_text(json.dumps(m))
        one_line_error(run("s05_encode_docs_to_chromadb.py", d, check=False), "s02_tkn_ms_marco.py")
    finally:
        mp.write_text(keep)


def test_checkpoint_of_interrupted_training_refused(data):
    """s04 killed after an epoch leaves a good checkpoint but no manifest: s05 won't index it."""
    d, _, _ = data
    mp = d / "s04_model.pt.manifest.json"
    keep = mp.read_text()
    try:
        mp.unlink()
        one_line_error(run("s05_encode_docs_to_chromadb.py", d, "--no-activate", check=False), "s04_train_tower.py")
    finally:
        mp.write_text(keep)


def test_output_without_manifest_refused(data, tmp_path):
    """What a stage killed between writing its output and its manifest leaves behind."""
    d, _, _ = data
    mp = d / "passages.parquet.manifest.json"
    keep = mp.read_text()
    try:
        mp.unlink()
        one_line_error(run("s01_create_triplets.py", d, check=False), "s00_combine_data.py")
    finally:
        mp.write_text(keep)


# ------------------------------------------------------------------ odd queries
ODD = ["", "   \t\n", "qqqzz xxyyw", "x" * 100_000, "what is the " * 10_000, "\x00\x01\x1b[31m\x7f",
       "什么是公司", "ما هو", "Привет мир", "donâ€™t", "\ud800 lone surrogate", "😀" * 50, "?", "-k 3"]


def test_searcher_on_odd_queries(data):
    from common.search import QueryError, Searcher
    d, _, _ = data
    s = Searcher(d)
    for q in ODD:
        try:
            hits = s.search(q, 5)
        except QueryError as e:
            assert str(e) and "\n" not in str(e)
            continue
        assert 1 <= len(hits) <= 5 and all(np.isfinite(h.score) for h in hits)


def test_s09_on_odd_queries(data):
    d, _, _ = data
    stdin = "\n".join(q.replace("\n", " ") for q in ODD if "\ud800" not in q) + "\nexit\n"
    r = run("s09_query_retrieve.py", d, "-k", "2", input=stdin)
    assert "Traceback" not in r.stderr and r.stdout.strip().endswith("bye"), r.stderr[-2000:]
    for q in ("\x01\x1b[2J 什么是公司 " + "x" * 100_000,):
        r = run("s09_query_retrieve.py", d, "--query", q, check=False)
        assert r.returncode in (0, 1) and "Traceback" not in r.stderr, r.stderr[-2000:]
        assert r.stdout.strip()
