"""The two-stage dense index (short vectors in Chroma, full vectors rescore) and the numpy query
encoder s09 uses instead of torch."""
import numpy as np
import pytest
import torch

from common import dense_index
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
    assert dense_index.index_vectors(x, 64, 256, 320) is not None
    np.testing.assert_array_equal(dense_index.index_vectors(x, 64, 256, 320), x)  # nothing to shorten
    y = dense_index.index_vectors(x, 64, 256, 192)
    assert y.shape == (50, 192)
    np.testing.assert_allclose(np.linalg.norm(y, axis=1), 1, atol=1e-5)
    # the semantic part keeps its direction; the lexical dims are the first 128, scaled by sqrt(2)
    ratio = y[:, 64:] / (x[:, 64:192] * np.sqrt(2))
    np.testing.assert_allclose(ratio, np.repeat(ratio[:, :1], 128, axis=1), rtol=1e-4)
    with pytest.raises(Exception, match="must exceed"):
        dense_index.index_vectors(x, 64, 256, 64)


class FakeCollection:
    """Answers every query with a fixed candidate list in a deliberately wrong order."""

    def __init__(self, cand_ids):
        self.cand_ids = [str(i) for i in cand_ids]
        self.asked = []

    def count(self):
        return len(self.cand_ids)

    def query(self, query_embeddings, n_results, include):
        self.asked.append((np.asarray(query_embeddings).shape, n_results))
        n = len(query_embeddings)
        return {"ids": [self.cand_ids[:n_results]] * n, "distances": [[0.5] * min(n_results, len(self.cand_ids))] * n}


def test_full_vectors_rescore_chroma_candidates(tmp_path):
    rng = np.random.default_rng(2)
    ids = rng.choice(2**62, size=40, replace=False).astype(np.int64) - 2**61  # negative ids too
    full = rng.normal(size=(40, 24)).astype(np.float32)
    full /= np.linalg.norm(full, axis=1, keepdims=True)
    name = "passages-test"
    vp = dense_index.create_vector_file(tmp_path, name, ids, 24, resume=False)
    w = dense_index.VectorWriter(vp)
    w.write(0, full[:25])
    w.write(25, full[25:])
    with pytest.raises(ValueError):
        w.write(39, full[:2])
    w.close()
    state = {"name": name, "total": 40, "dim": 24, "index_dim": 12, "out_dim": 4, "lex_dim": 20,
             "depth": 30, "full_vectors": True}
    col = FakeCollection(ids[::-1])  # worst order first
    idx = dense_index.DenseIndex(col, state, tmp_path)
    q = full[[3, 17]] + 0.01 * rng.normal(size=(2, 24)).astype(np.float32)
    got_ids, got_sc = idx.search(q, 5)
    assert col.asked == [((2, 12), 30)]  # short query vectors, `depth` candidates
    cand = ids[::-1][:30]
    f16 = full.astype(np.float16).astype(np.float32)
    for qi in range(2):
        exact = f16[[list(ids).index(c) for c in cand]] @ q[qi]
        order = np.argsort(-exact)[:5]
        assert got_ids[qi] == cand[order].tolist()
        np.testing.assert_allclose(got_sc[qi], exact[order], atol=1e-5)
    # lookups by id, unknown ids give zeros; a resumed build keeps the rows already written
    np.testing.assert_allclose(idx.vectors([ids[5], 12345, ids[0]]), f16[[5, 0, 0]] * [[1], [0], [1]], atol=1e-6)
    dense_index.create_vector_file(tmp_path, name, ids, 24, resume=True)
    np.testing.assert_allclose(idx.vectors([ids[7]]), f16[[7]], atol=1e-6)


def test_index_without_its_vector_file_is_refused(tmp_path):
    state = {"name": "passages-missing", "total": 3, "dim": 24, "index_dim": 12, "out_dim": 4, "lex_dim": 20,
             "full_vectors": True}
    with pytest.raises(Exception, match="re-run s08_reencode_all.py"):
        dense_index.DenseIndex(FakeCollection([1, 2, 3]), state, tmp_path)


def test_ef_search_changes_without_a_rebuild(tmp_path):
    """ef_search is query-time: not part of the collection's name, and set on the existing collection."""
    from common import vector_store
    assert vector_store.collection_name("f" * 16, {"ef_search": 100}, 192) == \
        vector_store.collection_name("f" * 16, {"ef_search": 400}, 192)
    assert vector_store.collection_name("f" * 16, {"ef_construction": 50}, 192) != \
        vector_store.collection_name("f" * 16, {}, 192)
    c = vector_store.client(tmp_path)
    col = vector_store.create_collection(c, "passages-ef", {"ef_search": 100})
    col.add(ids=["1", "2"], embeddings=np.eye(2, 4, dtype=np.float32))
    vector_store.set_ef_search([col], 250)
    assert vector_store.get_collection(c, "passages-ef").configuration["hnsw"]["ef_search"] == 250


@pytest.mark.parametrize("shards", [1, 2])
def test_faiss_graph_resumes_after_a_kill_and_finds_the_exact_neighbours(tmp_path, shards):
    """faiss_index.build: a build that dies part-way resumes from its last saved graph (not from
    zero), the finished graph(s) label every row once, and search agrees with exact search."""
    from common import faiss_index, vector_store
    rng = np.random.default_rng(3)
    n, dim = 3000, 16
    ids = rng.permutation(10 * n)[:n].astype(np.int64) + 7
    x = rng.normal(size=(n, dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    name = "passages-faiss"
    dense_index.create_vector_file(tmp_path, name, ids, dim, resume=False)  # the ids file: row -> id
    meta = {"index_dim": dim, "dim": dim, "out_dim": dim, "lex_dim": 0, "backend": "faiss", "total_rows": n}
    graph = {"max_neighbors": 16, "ef_construction": 100, "ef_search": 200}
    pp = vector_store.progress_path(tmp_path, name)
    started = []

    def batches(die_at=None):
        def gen(start):
            started.append(start)
            for s in range(start, n, 250):
                if die_at is not None and s >= die_at:
                    raise KeyboardInterrupt  # killed part-way
                yield ids[s:s + 250], x[s:s + 250], None
        return gen

    with pytest.raises(KeyboardInterrupt):
        faiss_index.build(tmp_path, name, meta, n, batches(die_at=1700), graph, log=lambda *a: None,
                          progress_path=pp, save_every=500, shards=shards)
    last = faiss_index.graph_path(tmp_path, name, shards - 1, shards)
    assert not last.exists() and faiss_index.partial_path(tmp_path, name).exists() == (shards == 1)
    logs = []
    st = faiss_index.build(tmp_path, name, meta, n, batches(), graph, log=logs.append, progress_path=pp,
                           save_every=500, shards=shards)
    assert started == [0, 1500] and "resuming" in logs[0]
    assert st["complete"] and not faiss_index.partial_path(tmp_path, name).exists() and last.exists()
    g = faiss_index.FaissIndex(tmp_path, name, n, ef_search=200, shards=shards)
    q = x[:50] + 0.05 * rng.normal(size=(50, dim)).astype(np.float32)
    got = g.query(q, 10, include=["distances"])
    exact = np.argsort(-(q @ x.T), axis=1)[:, :10]
    recall = np.mean([len(set(a.tolist()) & set(ids[b].tolist())) / 10 for a, b in zip(got["ids"], exact)])
    assert recall >= 0.95, recall
    np.testing.assert_allclose(got["distances"][0][0], 1 - (q[0] @ x[exact[0, 0]]), atol=1e-4)
    # a complete build is not redone; a changed setting starts again from zero
    started.clear()
    faiss_index.build(tmp_path, name, meta, n, batches(), graph, log=logs.append, progress_path=pp, shards=shards)
    assert started == [] and "already complete" in logs[-1]
    faiss_index.build(tmp_path, name, dict(meta, model_fingerprint="other"), n, batches(), graph,
                      log=logs.append, progress_path=pp, shards=shards)
    assert started == [0]
