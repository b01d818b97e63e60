# Scratch: the faiss HNSW graph (common/faiss_index.py) at 1M: build rate, then recall@10 / MRR@10
# against exact search and query time per ef_search, on the queries of recall.py (see README.md).
# usage: faiss_graph.py DIM EFC M   (run recall.py once first: it writes /tmp/mb/q.npy, ex.npy, rel.pkl)
import sys, time, os, numpy as np, pickle
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[2]))
import faiss
from common.dense_index import index_vectors
from common.metrics import mrr_at_k
dim, efc, M = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
path = f"/tmp/mb/f_{dim}_{efc}_{M}.faiss"
V = np.load("/tmp/mb/vecs1m.npy", mmap_mode="r"); n = V.shape[0]
if not os.path.exists(path):
    idx = faiss.IndexHNSWFlat(dim, M, faiss.METRIC_INNER_PRODUCT); idx.hnsw.efConstruction = efc
    t0 = time.time(); c0 = time.process_time()
    for s in range(0, n, 20000): idx.add(index_vectors(np.asarray(V[s:s+20000]), 64, 256, dim))
    dt = time.time() - t0
    print(f"build {n/dt:,.0f}/s cpu {time.process_time()-c0:.0f}s", flush=True)
    t0 = time.time(); faiss.write_index(idx, path + ".tmp"); os.rename(path + ".tmp", path); print(f"write {time.time()-t0:.1f}s", flush=True)
t0 = time.time(); idx = faiss.read_index(path); print(f"read {time.time()-t0:.2f}s size {os.path.getsize(path)/1e9:.2f} GB")
Q = np.load("/tmp/mb/q.npy"); ex = np.load("/tmp/mb/ex.npy"); REL = [set(r) for r in pickle.load(open("/tmp/mb/rel.pkl", "rb"))]
qc = index_vectors(Q, 64, 256, dim)
for nt in (1, 2):
  faiss.omp_set_num_threads(nt)
  for ef in (200, 300, 400, 800):
    idx.hnsw.efSearch = ef
    rr = []; ts = []
    for i in range(len(Q)):
        t0 = time.perf_counter(); _, I = idx.search(qc[i:i+1], 100); ts.append(time.perf_counter() - t0)
        c = np.sort(I[0]); f = np.asarray(V[c]).astype(np.float16).astype(np.float32)
        rr.append(c[np.argsort(-(f @ Q[i]))[:10]])
    rec = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(rr, ex)])
    print(f"omp {nt} ef {ef}: recall@10 {rec:.4f} MRR {mrr_at_k(rr, REL):.4f} search median {np.median(ts)*1e3:.2f} ms p95 {np.percentile(ts,95)*1e3:.2f}", flush=True)
