# Scratch: Chroma's two 500k shards (build_shard.py tags C, D) against one faiss graph of 1M
# (faiss_graph.py), on the same NQ test queries: recall@10 against exact search over the full
# vectors, MRR@10 against the labels, search time per query (see README.md).
# usage: compare.py NQ CHROMA_EF FAISS_EF...   e.g. compare.py 2000 300 300 400 500 600 800
import sys, os, time, pickle, numpy as np
os.environ["ANONYMIZED_TELEMETRY"] = "False"
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[2]))
from pathlib import Path
from concurrent.futures import ThreadPoolExecutor
from common.dense_index import index_vectors
from common.metrics import mrr_at_k
DEPTH = int(os.environ.get("DEPTH", "100"))  # faiss candidates rescored (Chroma: 100 per shard)
nq, cef, fefs = int(sys.argv[1]), int(sys.argv[2]), [int(x) for x in sys.argv[3:]]
d = Path("/tmp/msmarco-bench/run_100000/data")
V = np.load("/tmp/mb/vecs1m.npy", mmap_mode="r")
cache = f"/tmp/mb/cmp{nq}.pkl"
if not os.path.exists(cache):
    import torch
    torch.set_num_threads(2)
    from common.corpus import load_corpus
    from common.encode import encode_rows, load_model
    C = load_corpus(d)
    model, _ = load_model(d / "s04_model.pt", C.vocab.fingerprint, torch.device("cpu"))
    qids, rel = C.split_queries("test")
    Q = encode_rows(model, C.qtok, C.qidx.rows(qids[:nq]), "query", torch.device("cpu"), max_len=64)
    ex = []
    for lo in range(0, nq, 250):  # exact top 10 over the float16-rounded full vectors
        S = np.zeros((min(250, nq - lo), V.shape[0]), np.float32)
        for s in range(0, V.shape[0], 100000):
            S[:, s:s + 100000] = Q[lo:lo + 250] @ np.asarray(V[s:s + 100000]).astype(np.float16).astype(np.float32).T
        ex += list(np.argsort(-S, axis=1)[:, :10])
    REL = [set(C.pidx.rows(np.array(sorted(r), dtype=np.int64)).tolist()) for r in rel[:nq]]
    pickle.dump((Q, ex, REL), open(cache, "wb"))
Q, ex, REL = pickle.load(open(cache, "rb"))
qc = index_vectors(Q, 64, 256, 192)


def rescore(i, rows):
    c = np.sort(np.asarray(rows, np.int64)); f = np.asarray(V[c]).astype(np.float16).astype(np.float32)
    return c[np.argsort(-(f @ Q[i]))[:10]]


def report(tag, rr, ts):
    rec = np.mean([len(set(a.tolist()) & set(b.tolist())) / 10 for a, b in zip(rr, ex)])
    print(f"{tag}: recall@10 {rec:.4f} MRR@10 {mrr_at_k([r.tolist() for r in rr], REL):.4f} "
          f"search median {np.median(ts) * 1e3:.2f} ms p95 {np.percentile(ts, 95) * 1e3:.2f}", flush=True)


print(f"{nq} test queries; exact MRR@10 {mrr_at_k([e.tolist() for e in ex], REL):.4f}", flush=True)
if cef:
    import chromadb
    from chromadb.config import Settings
    cols = []
    for p in ("/tmp/mb/storeC", "/tmp/mb/storeD"):
        col = chromadb.PersistentClient(path=p, settings=Settings(anonymized_telemetry=False)).get_collection("ttt", embedding_function=None)
        col.modify(configuration={"hnsw": {"ef_search": cef}})
        cols.append(col)
    pool = ThreadPoolExecutor(2)
    for col in cols:
        col.query(query_embeddings=qc[:1], n_results=1)  # load
    rr, ts = [], []
    for i in range(nq):
        t0 = time.perf_counter()
        parts = list(pool.map(lambda c: c.query(query_embeddings=qc[i:i + 1], n_results=100, include=[]), cols))
        ts.append(time.perf_counter() - t0)
        rr.append(rescore(i, [int(x) for p in parts for x in p["ids"][0]]))
    report(f"chroma 2x500k ef {cef} (shards in parallel)", rr, ts)
import faiss
g = faiss.read_index("/tmp/mb/f_192_100_16.faiss")
for ef in fefs:
    g.hnsw.efSearch = ef
    rr, ts = [], []
    for i in range(nq):
        t0 = time.perf_counter(); _, I = g.search(qc[i:i + 1], DEPTH); ts.append(time.perf_counter() - t0)
        rr.append(rescore(i, I[0]))
    report(f"faiss 1M ef {ef} depth {DEPTH}", rr, ts)
