"""The index layer: one contract run over every backend (build, kill and resume, search in rows
that map to the right ids), the short index vectors, and the numpy query encoder s09 uses
instead of torch."""
import numpy as np
import pytest
import torch

from common.index import chroma_graph, faiss_graph, graph, state, store, vectors
from common.index.dense import Index
from common.encode import encode_texts
from common.model import TwoTowerModel, stem_map
from common.query_encoder import NumpyQueryEncoder, export
from common.vocab import Vocab

torch.set_num_threads(1)
WORDS = ["<pad>", "<unk>", "cat", "cats", "dog", "dogs", "running", "runs", "coffee", "tea", "the", "a"]


def model_and_vocab(lex_dim=8, token_weights=True):
    v = Vocab(WORDS)
    rng = np.random.default_rng(0)
    m = TwoTowerModel(len(WORDS), 6, {"out_dim": 5, "lex_dim": lex_dim, "token_weights": token_weights},
                      embeddings=rng.normal(size=(len(WORDS), 6)).astype(np.float32),
                      idf=rng.uniform(0.5, 3, len(WORDS)).astype(np.float32), stems=stem_map(WORDS))
    with torch.no_grad():  # trained-looking weights, not the initial ones
        for p in m.parameters():
            p.add_(0.1 * torch.randn_like(p))
    m.eval()
    return m, v


@pytest.mark.parametrize("lex_dim,token_weights", [(8, True), (0, True), (8, False)])
def test_numpy_query_encoder_matches_the_torch_tower(tmp_path, lex_dim, token_weights):
    m, v = model_and_vocab(lex_dim, token_weights)
    assert export(m, tmp_path, "idx") is not None
    enc = NumpyQueryEncoder(tmp_path, "idx", v)
    assert enc.fingerprint == m.fingerprint()
    texts = ["the cats running", "coffee", "unknownword", "Dogs run; a DOG runs! tea tea tea", "zz cat zz"]
    want, want_known = encode_texts(m, v, texts, torch.device("cpu"), "query")
    got, known = enc.encode(texts)
    np.testing.assert_allclose(got, want, atol=2e-6)
    assert known.tolist() == want_known.tolist() == [3, 1, 0, 7, 1]


def test_gru_tower_is_not_exported(tmp_path):
    m = TwoTowerModel(len(WORDS), 6, {"encoder": "gru", "out_dim": 5, "lex_dim": 8, "gru_hidden": 4})
    assert export(m, tmp_path, "idx") is None


def test_index_vectors_keep_the_balance_of_the_two_parts():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(50, 64 + 256)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    assert vectors.index_vectors(x, 64, 256, 320) is not None
    np.testing.assert_array_equal(vectors.index_vectors(x, 64, 256, 320), x)  # nothing to shorten
    y = vectors.index_vectors(x, 64, 256, 192)
    assert y.shape == (50, 192)
    np.testing.assert_allclose(np.linalg.norm(y, axis=1), 1, atol=1e-5)
    # the semantic part keeps its direction; the lexical dims are the first 128, scaled by sqrt(2)
    ratio = y[:, 64:] / (x[:, 64:192] * np.sqrt(2))
    np.testing.assert_allclose(ratio, np.repeat(ratio[:, :1], 128, axis=1), rtol=1e-4)
    with pytest.raises(Exception, match="must exceed"):
        vectors.index_vectors(x, 64, 256, 64)


class ArraySource:
    """A backend's build source over fixed arrays: batches(lo, hi, start) as EncodeSource gives
    them. die_at: raise KeyboardInterrupt (a killed build) when reaching that row."""

    def __init__(self, ids, x, die_at=None):
        self.ids, self.x, self.die_at, self.started = ids, x, die_at, []

    def single_thread(self):
        pass

    def batches(self, lo, hi, start):
        self.started.append(lo + start)
        for s in range(lo + start, hi, 250):
            if self.die_at is not None and s >= self.die_at:
                raise KeyboardInterrupt
            r = np.arange(s, min(s + 250, hi))
            yield r, self.ids[r], self.x[r], None


def _data(tmp_path, n=2000, dim=16, seed=3):
    """Unit vectors and their ids (negative ones too), with the index's vector files written."""
    rng = np.random.default_rng(seed)
    ids = rng.choice(2**62, size=n, replace=False).astype(np.int64) - 2**61
    x = rng.normal(size=(n, dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return ids, x, rng


def _job(tmp_path, name, n, dim, backend, **kw):
    meta = {"index_dim": dim, "dim": dim, "out_dim": dim, "lex_dim": 0, "full_vectors": True}
    if backend == "faiss":
        meta["backend"] = "faiss"
    return graph.BuildJob(tmp_path, name, meta, n, {"max_neighbors": 16, "ef_construction": 100, "ef_search": 200},
                          state.progress_path(tmp_path, name), save_every=500, options={"write_batch": 100},
                          log=lambda *a: None, **kw)


def _write_vectors(tmp_path, name, ids, x):
    vp = vectors.create_vector_file(tmp_path, name, ids, x.shape[1], resume=False)
    w = vectors.VectorWriter(vp)
    w.write(0, x)
    w.close()


BACKENDS = [faiss_graph, chroma_graph]


@pytest.mark.parametrize("backend", BACKENDS, ids=lambda b: b.NAME)
def test_backend_contract_build_kill_resume_search(tmp_path, backend):
    """Every backend: a build killed part-way resumes (not from zero) and records progress only
    for what it stored; the complete index answers in rows whose ids are the passages' own, and
    agrees with exact search; a complete build is not redone; another model starts again."""
    n, dim = 2000, 16
    ids, x, rng = _data(tmp_path, n, dim)
    name = f"passages-{backend.NAME}"
    _write_vectors(tmp_path, name, ids, x)
    saved = []
    job = _job(tmp_path, name, n, dim, backend.NAME, on_saved=saved.append)
    src = ArraySource(ids, x, die_at=1250)
    with pytest.raises(KeyboardInterrupt):
        backend.build(job, src)
    st = state.read_progress(job.progress_path)
    assert not st["complete"] and 0 < st["done"] <= 1250 and saved and saved[-1] == st["done"]
    src = ArraySource(ids, x)
    logs = []
    job.log = logs.append
    st = backend.build(job, src)
    assert src.started[0] > 0 and any("resuming" in m for m in logs)
    assert st["complete"] and st["total"] == n
    st = dict(st, name=name, backend=backend.NAME)
    full = vectors.FullVectors(tmp_path, name)
    idx = Index(backend.open_graph(tmp_path, st, full.rows), st, full)
    q = x[:40] + 0.05 * rng.normal(size=(40, dim)).astype(np.float32)
    rows, sc = idx.search(q, 10)
    exact = np.argsort(-(q @ x.T), axis=1)[:, :10]
    recall = np.mean([len(set(r.tolist()) & set(e.tolist())) / 10 for r, e in zip(rows, exact)])
    assert recall >= 0.95, recall
    for r, s_, qi in zip(rows, sc, q):
        np.testing.assert_allclose(s_, x[r].astype(np.float16).astype(np.float32) @ qi, atol=2e-3)  # exact rescoring
        assert np.all(np.diff(s_) <= 1e-6)  # best first
    got_ids, _ = idx.search_ids(q, 10)
    assert all(g.tolist() == ids[r].tolist() for g, r in zip(got_ids, rows))  # rows = ids
    idx.close()
    src = ArraySource(ids, x)
    backend.build(job, src)
    assert src.started == [] and "already complete" in logs[-1]
    job.meta = dict(job.meta, model_fingerprint="other")
    src = ArraySource(ids, x)
    backend.build(job, src)
    assert src.started == [0]


def test_a_centred_faiss_graph_finds_more_of_a_narrow_cone(tmp_path):
    """Passages crowded in one narrow cone around a common direction, with topic clusters, and
    questions that carry the topic part but little of the common one (as a question tower's
    vectors do): the graph over the vectors minus their mean finds more of the exact top 10, and
    the rescored answers still rank by the true cosine (the centre changes no passage's rank)."""
    rng = np.random.default_rng(0)
    n, dim, k = 20000, 32, 200
    axis = rng.normal(size=dim).astype(np.float32)
    axis /= np.linalg.norm(axis)
    topics = axis * 3 + rng.normal(size=(k, dim)).astype(np.float32) * 0.7
    x = topics[rng.integers(0, k, n)] + rng.normal(size=(n, dim)).astype(np.float32) * 0.3
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q = topics[rng.integers(0, k, 100)] - axis * 3 + 0.1 * rng.normal(size=(100, dim)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    exact = np.argsort(-(q @ x.T), axis=1)[:, :10]
    ids = np.arange(n, dtype=np.int64) * 3 + 1
    recall = {}
    for label, centre in (("raw", None), ("centred", x.mean(0))):
        d = tmp_path / label
        name = "passages-cone"
        _write_vectors(d, name, ids, x)
        job = _job(d, name, n, dim, "faiss")
        job.hnsw = {"max_neighbors": 8, "ef_construction": 32}
        job.save_every = n
        if centre is not None:
            job.options["centre"] = centre
        st = faiss_graph.build(job, ArraySource(ids, x))
        assert ("centre" in st) == (centre is not None)
        full = vectors.FullVectors(d, name)
        idx = Index(faiss_graph.FaissGraph(d, name, n, ef_search=16), dict(st, name=name, backend="faiss"), full)
        rows, sc = idx.search(q, 10, depth=50)
        recall[label] = np.mean([len(set(r.tolist()) & set(e.tolist())) / 10 for r, e in zip(rows, exact)])
        for r, s_, qi in zip(rows, sc, q):
            np.testing.assert_allclose(s_, x[r].astype(np.float16).astype(np.float32) @ qi, atol=2e-3)
    assert recall["centred"] > recall["raw"] + 0.03, recall


@pytest.mark.parametrize("shards", [1, 2])
def test_faiss_shards_resume_from_the_last_saved_graph(tmp_path, shards):
    """faiss builds its shards in turn: killed in the second, only that shard starts again (the
    partial graph of a one-graph build is kept), and every row is labelled once."""
    n, dim = 3000, 16
    ids, x, rng = _data(tmp_path, n, dim)
    name = "passages-faiss"
    _write_vectors(tmp_path, name, ids, x)
    job = _job(tmp_path, name, n, dim, "faiss", shards=shards)
    with pytest.raises(KeyboardInterrupt):
        faiss_graph.build(job, ArraySource(ids, x, die_at=1700))
    last = faiss_graph.graph_path(tmp_path, name, shards - 1, shards)
    assert not last.exists() and faiss_graph.partial_path(tmp_path, name).exists() == (shards == 1)
    src = ArraySource(ids, x)
    st = faiss_graph.build(job, src)
    assert src.started == [1500] and st["complete"] and last.exists()
    assert not faiss_graph.partial_path(tmp_path, name).exists()
    g = faiss_graph.open_graph(tmp_path, dict(st, name=name))
    rows = g.search(x[:5], 3)
    assert [r[0] for r in rows] == [0, 1, 2, 3, 4]  # each vector finds its own row first
    assert faiss_graph.files(tmp_path, dict(st, name=name)) == \
        [faiss_graph.graph_path(tmp_path, name, i, shards) for i in range(shards)]


def test_sq8_graph_is_smaller_resumes_with_its_ranges_and_rescoring_keeps_recall(tmp_path):
    """--graph-codes sq8: the quantiser's ranges are trained once on the sample and kept in the
    state, so a build killed in its second shard resumes (without the sample) and quantises that
    shard alike; the graph files are IndexHNSWSQ and much smaller than flat ones; rescoring by the
    full vectors gives the exact scores and as much of the exact top 10 as a flat graph."""
    import faiss
    n, dim = 3000, 64
    ids, x, rng = _data(tmp_path, n, dim)
    q = x[:60] + 0.05 * rng.normal(size=(60, dim)).astype(np.float32)
    exact = np.argsort(-(q @ x.T), axis=1)[:, :10]
    got = {}
    for codes in ("flat", "sq8"):
        d = tmp_path / codes
        name = f"passages-{codes}"
        _write_vectors(d, name, ids, x)
        job = _job(d, name, n, dim, "faiss", shards=2)
        c = x[::10].mean(0)
        job.options.update(codes=codes, centre=c, train=x[::10] - c)
        if codes == "sq8":
            with pytest.raises(KeyboardInterrupt):
                faiss_graph.build(job, ArraySource(ids, x, die_at=1700))
            ranges = state.read_progress(job.progress_path)["sq_trained"]
            assert len(ranges) == 2 * dim
            job.options = {"codes": "sq8"}  # a resumed run does not sample again
        src = ArraySource(ids, x)
        st = faiss_graph.build(job, src)
        assert st["complete"] and st["codes"] == codes
        if codes == "sq8":
            assert src.started == [1500] and st["sq_trained"] == ranges
            for f in faiss_graph.files(d, dict(st, name=name)):
                g = faiss.read_index(str(f))
                assert isinstance(g, faiss.IndexHNSWSQ)
                np.testing.assert_array_equal(faiss.vector_to_array(faiss.downcast_index(g.storage).sq.trained),
                                              np.asarray(ranges, np.float32))
        got[codes] = sum(f.stat().st_size for f in faiss_graph.files(d, dict(st, name=name)))
        full = vectors.FullVectors(d, name)
        idx = Index(faiss_graph.open_graph(d, dict(st, name=name)), dict(st, name=name, backend="faiss"), full)
        rows, sc = idx.search(q, 10)
        got[codes + " recall"] = np.mean([len(set(r.tolist()) & set(e.tolist())) / 10 for r, e in zip(rows, exact)])
        for r, s_, qi in zip(rows, sc, q):
            np.testing.assert_allclose(s_, x[r].astype(np.float16).astype(np.float32) @ qi, atol=2e-3)
        idx.close()
    assert got["sq8"] < 0.6 * got["flat"], got
    assert got["sq8 recall"] >= 0.95 and got["sq8 recall"] >= got["flat recall"] - 0.01, got


def test_graph_codes_auto_and_their_settings():
    """auto picks sq8 only at v2.1 scale; a flat index keeps the name it had before codes existed."""
    assert faiss_graph.auto_codes(1_000_000) == "flat" and faiss_graph.auto_codes(faiss_graph.SQ8_FROM) == "sq8"
    fp = "0123456789abcdef" * 2
    base = {"backend": "faiss", "centred": True}
    assert store.index_name(fp, base) != store.index_name(fp, dict(base, codes="sq8"))


def test_registry_opens_an_index_by_its_recorded_backend(tmp_path):
    """store.open_index reads the backend from the index's state (an old Chroma state names none),
    refuses an unknown one and an index without full vectors, in one line naming s08."""
    n, dim = 300, 8
    ids, x, _ = _data(tmp_path, n, dim)
    name = "passages-reg"
    _write_vectors(tmp_path, name, ids, x)
    job = _job(tmp_path, name, n, dim, "faiss")
    st = faiss_graph.build(job, ArraySource(ids, x))
    st = store.record_files(tmp_path, dict(st, backend="faiss"))
    state.write_json(job.progress_path, st)
    idx = store.open_index(tmp_path, name)
    assert isinstance(idx.graph, faiss_graph.FaissGraph) and idx.backend == "faiss"
    assert store.backend_of({"name": "x"}) is chroma_graph
    with pytest.raises(Exception, match="unknown backend 'nope'.*re-run s08_reencode_all.py"):
        store.backend_of({"name": "x", "backend": "nope"})
    state.write_json(job.progress_path, dict(st, full_vectors=False, files={}))
    with pytest.raises(Exception, match="before indexes kept their full vectors: re-run s08_reencode_all.py"):
        store.open_index(tmp_path, name)
    assert store.open_index(tmp_path, "passages-none") is None


def test_index_without_its_vector_file_is_refused(tmp_path):
    with pytest.raises(Exception, match="not found: run s08_reencode_all.py"):
        vectors.FullVectors(tmp_path, "passages-missing")


def test_vector_file_resume_keeps_written_rows(tmp_path):
    ids, x, _ = _data(tmp_path, 40, 24, seed=2)
    name = "passages-test"
    vp = vectors.create_vector_file(tmp_path, name, ids, 24, resume=False)
    w = vectors.VectorWriter(vp)
    w.write(0, x[:25])
    w.write(25, x[25:])
    with pytest.raises(ValueError):
        w.write(39, x[:2])
    w.close()
    f16 = x.astype(np.float16).astype(np.float32)
    full = vectors.FullVectors(tmp_path, name)
    np.testing.assert_allclose(full.get([ids[5], 12345, ids[0]]), f16[[5, 0, 0]] * [[1], [0], [1]], atol=1e-6)
    vectors.create_vector_file(tmp_path, name, ids, 24, resume=True)
    np.testing.assert_allclose(vectors.FullVectors(tmp_path, name).get([ids[7]]), f16[[7]], atol=1e-6)
    assert full.row_ids.tolist() == ids.tolist()


def test_ef_search_changes_without_a_rebuild(tmp_path):
    """ef_search is query-time: not part of the index's name, and set on the existing collection."""
    assert store.index_name("f" * 16, {"ef_search": 100}, 192) == store.index_name("f" * 16, {"ef_search": 400}, 192)
    assert store.index_name("f" * 16, {"ef_construction": 50}, 192) != store.index_name("f" * 16, {}, 192)
    c = chroma_graph.client(tmp_path)
    col = chroma_graph.create_collection(c, "passages-ef", {"ef_search": 100})
    col.add(ids=["1", "2"], embeddings=np.eye(2, 4, dtype=np.float32))
    chroma_graph.set_ef_search([col], 250)
    assert chroma_graph.get_collection(c, "passages-ef").configuration["hnsw"]["ef_search"] == 250


def test_index_names_are_those_of_earlier_builds():
    """An index's name is its identity: names computed before the index layer was redesigned
    still find their indexes (old data folders keep loading)."""
    fp = "0123456789abcdef0123"
    assert store.index_name(fp, {"backend": "faiss"}) == "passages-0123456789abcdef-" + \
        __import__("hashlib").sha1(__import__("json").dumps(
            {"backend": "faiss", "ef_construction": 100, "max_neighbors": 16, "space": "cosine"},
            sort_keys=True).encode()).hexdigest()[:6]
    assert store.index_name(fp, {"backend": "chroma"}) == store.index_name(fp, {})


def test_encoded_parts_build_the_same_index(pipeline):
    """s05 --encode-part I/N encodes only its rows (no index, no lock, nothing activated); a plain
    s05 with a part missing names it and its command; with every part done it builds the index
    from them without encoding, and the vectors are those of a plain build."""
    import json
    import shutil

    from helpers import run
    data, _ = pipeline
    ref = {}  # each model's vectors from the plain builds
    for p in (data / "indexes").glob("passages-*.json"):
        st = json.loads(p.read_text())
        ref[st["model_fingerprint"]] = np.load(vectors.vectors_path(data, st["name"]))
    shutil.rmtree(data / "indexes")
    (data / "active_index.json").unlink()
    r = run("s05_encode_docs_to_chromadb.py", data, "--encode-part", "1/2")
    assert "encoded part 1/2" in r.stdout and not (data / "active_index.json").exists()
    assert not (data / "indexes").exists() or not list((data / "indexes").glob("*.faiss"))
    r = run("s05_encode_docs_to_chromadb.py", data, check=False)
    assert r.returncode == 2 and "--encode-part 2/2" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    run("s05_encode_docs_to_chromadb.py", data, "--encode-part", "2/2")
    r = run("s05_encode_docs_to_chromadb.py", data)
    assert "from 2 encoded parts" in r.stdout
    st = json.loads((data / "active_index.json").read_text())
    assert [p["part"] for p in st["encoded_parts"]] == [[1, 2], [2, 2]]
    assert st["encoded_parts"][0]["precision"] == {"compute": "fp32", "stored": "float16"}
    # equal up to float16's last bit: a row's sums round by the rows batched with it, and a part's
    # batches are not the plain build's
    got, want = np.load(vectors.vectors_path(data, st["name"])), ref[st["model_fingerprint"]]
    np.testing.assert_allclose(got.astype(np.float32), want.astype(np.float32), rtol=2 ** -10, atol=1e-6)
    assert (got != want).mean() < 1e-3
    r = run("s09_query_retrieve.py", data, "--query", "the", "-k", "3", "--mode", "dense")
    assert " 1. " in r.stdout
    r = run("s05_encode_docs_to_chromadb.py", data, "--encode-part", "3/2", check=False)
    assert r.returncode == 2 and "--encode-part" in r.stderr


def test_s10_reads_the_pool_vectors_from_the_index_file(pipeline):
    """s10 takes each checkpoint's pool vectors from its index's vector file instead of encoding
    10M passages again: they are bit for bit what encoding the pool gives."""
    from common import retrieval
    from common.corpus import load_corpus
    from common.evaluation import Evaluator
    import torch
    data, _ = pipeline
    corpus = load_corpus(data)
    cpu = torch.device("cpu")
    ev = Evaluator(data, data, corpus, cpu)
    model, ckpt = ev.model("s04_model.pt")
    assert ev.index_for(ckpt) is not None
    P = ev.pool_vectors("s04_model.pt")
    assert isinstance(P, np.memmap)
    want = retrieval.encode_pool(model, corpus, cpu, dtype=np.float16)  # equal up to float16's last bit (batching)
    np.testing.assert_allclose(np.asarray(P, np.float32), want.astype(np.float32), rtol=2 ** -10, atol=1e-6)


def test_s10_keeps_pool_vectors_without_an_index_on_disk(pipeline, tmp_path):
    """A checkpoint without an index has its pool encoded once into a file under s10's keep folder
    (memory-mapped: the kernel's to drop, not the process's), the same values as in memory, and a
    second Evaluator reuses that file instead of encoding again."""
    from common import retrieval
    from common.corpus import load_corpus
    from common.evaluation import Evaluator
    import torch
    data, _ = pipeline
    corpus = load_corpus(data)
    cpu = torch.device("cpu")
    keep = tmp_path / "keep"
    ev = Evaluator(data, data, corpus, cpu, use_index=False, keep=keep)
    model, _ = ev.model("s04_model.pt")
    P = ev.pool_vectors("s04_model.pt")
    assert isinstance(P, np.memmap) and P.dtype == np.float16
    files = list(keep.glob("pool-*.npy"))
    assert len(files) == 1 and not list(keep.glob("*.tmp*"))
    want = retrieval.encode_pool(model, corpus, cpu, dtype=np.float16)  # equal up to float16's last bit (batching)
    np.testing.assert_allclose(np.asarray(P, np.float32), want.astype(np.float32), rtol=2 ** -10, atol=1e-6)
    before = files[0].stat().st_mtime_ns
    again = Evaluator(data, data, corpus, cpu, use_index=False, keep=keep).pool_vectors("s04_model.pt")
    assert files[0].stat().st_mtime_ns == before
    np.testing.assert_array_equal(again, P)
    # the GloVe baseline's pool, kept the same way, ranks as the in-memory one does
    qids = corpus.labelled("test").qids[:20]
    on_disk = ev.glove(qids, 10)
    in_memory = Evaluator(data, data, corpus, cpu, use_index=False).glove(qids, 10)
    np.testing.assert_array_equal(on_disk[0], in_memory[0])
    assert len(list(keep.glob("pool-glove-*.npy"))) == 1


def test_dense_search_rescores_the_rows_it_is_given_beside_the_graphs(tmp_path):
    """Index.search(extra=...): rows from elsewhere (s09 and s10 pass BM25's top rows) are rescored with
    the graph's candidates, each once; a weak graph that misses most of the exact top 10 then returns
    all of it when those rows are among the extra ones, in the exact order."""
    ids, x, rng = _data(tmp_path, n=3000, dim=16)
    name = "passages-extra"
    _write_vectors(tmp_path, name, ids, x)
    job = _job(tmp_path, name, len(x), 16, "faiss")
    job.hnsw = {"max_neighbors": 4, "ef_construction": 8}
    st = faiss_graph.build(job, ArraySource(ids, x))
    idx = Index(faiss_graph.FaissGraph(tmp_path, name, len(x), ef_search=4), dict(st, name=name, backend="faiss"),
                vectors.FullVectors(tmp_path, name))
    q = rng.normal(size=(50, 16)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    x16 = x.astype(np.float16).astype(np.float32)
    exact = np.argsort(-(q @ x16.T), axis=1, kind="stable")[:, :10]
    recall = lambda rows: np.mean([len(set(r.tolist()) & set(e.tolist())) / 10 for r, e in zip(rows, exact)])
    alone, _ = idx.search(q, 10, depth=10)
    graph_rows = [np.asarray(r) for r in idx.graph.search(idx.query_vectors(q), 10)]
    extra = [np.concatenate([e[::-1], rng.integers(0, len(x), 30), g]) for e, g in zip(exact, graph_rows)]
    rows, sc = idx.search(q, 10, depth=10, extra=extra)
    assert recall(alone) < 0.9 and recall(rows) == 1.0, (recall(alone), recall(rows))
    for r, s_, e, qi in zip(rows, sc, exact, q):
        assert len(set(r.tolist())) == len(r)
        np.testing.assert_array_equal(np.sort(r), np.sort(e))
        assert np.all(np.diff(s_) <= 0)
        np.testing.assert_allclose(s_, x16[r] @ qi, atol=1e-5)


def test_hnsw_m_by_size_and_codes():
    """M when none is asked for: 32 for faiss float32 graphs from SMALL_INDEX passages, else 16
    (small graphs, sq8 graphs, Chroma); --max-neighbors 1 is refused."""
    import argparse
    from common.index import build
    small, big = graph.SMALL_INDEX - 1, graph.SMALL_INDEX
    assert graph.auto_max_neighbors(small, "flat") == graph.HNSW["max_neighbors"] == 16
    assert graph.auto_max_neighbors(big, "flat") == 32
    assert graph.auto_max_neighbors(10 ** 7, "sq8") == 16 and graph.auto_max_neighbors(big, None) == 16
    p = argparse.ArgumentParser()
    build.add_args(p)
    assert "max_neighbors" not in build.options_from_args(p.parse_args([])).hnsw
    assert build.options_from_args(p.parse_args(["--max-neighbors", "8"])).hnsw["max_neighbors"] == 8
    with pytest.raises(SystemExit):
        p.parse_args(["--max-neighbors", "1"])
