# Scratch: faiss graphs over SHARDS equal parts of the 1M vectors, each built with all cores in turn,
# queried in parallel threads (what common/faiss_index.py does from 200k passages); same queries and
# figures as compare.py (run it first).  usage: faiss_shards.py SHARDS EFC EF...
import sys, os, time, pickle, numpy as np
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[2]))
from concurrent.futures import ThreadPoolExecutor
import faiss
from common.dense_index import index_vectors
from common.metrics import mrr_at_k
k, efc, efs = int(sys.argv[1]), int(sys.argv[2]), [int(x) for x in sys.argv[3:]]
V = np.load("/tmp/mb/vecs1m.npy", mmap_mode="r"); n = V.shape[0]
bounds = [(i * n // k, (i + 1) * n // k) for i in range(k)]
graphs = []
t0 = time.time(); c0 = time.process_time()
for i, (lo, hi) in enumerate(bounds):
    p = f"/tmp/mb/fs_{k}_{i}_{efc}.faiss"
    if os.path.exists(p):
        graphs.append(faiss.read_index(p)); continue
    g = faiss.IndexHNSWFlat(192, 16, faiss.METRIC_INNER_PRODUCT); g.hnsw.efConstruction = efc
    for s in range(lo, hi, 50000):
        g.add(index_vectors(np.asarray(V[s:min(s + 50000, hi)]), 64, 256, 192))
    faiss.write_index(g, p); graphs.append(g)
dt = time.time() - t0
print(f"{k} shards efc {efc}: built/read in {dt:.0f} s ({n / dt:,.0f}/s), cpu {time.process_time() - c0:.0f} s", flush=True)
Q, ex, REL = pickle.load(open("/tmp/mb/cmp2000.pkl", "rb")); nq = len(Q)
qc = index_vectors(Q, 64, 256, 192)
pool = ThreadPoolExecutor(k)
faiss.omp_set_num_threads(1)
for ef in efs:
    for g in graphs:
        g.hnsw.efSearch = ef
    rr, ts = [], []
    for i in range(nq):
        t0 = time.perf_counter()
        parts = list(pool.map(lambda gi: gi[1].search(qc[i:i + 1], 100)[1][0] + bounds[gi[0]][0], enumerate(graphs)))
        ts.append(time.perf_counter() - t0)
        c = np.sort(np.concatenate(parts)); f = np.asarray(V[c]).astype(np.float16).astype(np.float32)
        rr.append(c[np.argsort(-(f @ Q[i]))[:10]])
    rec = np.mean([len(set(a.tolist()) & set(b.tolist())) / 10 for a, b in zip(rr, ex)])
    print(f"faiss {k}x{n // k} ef {ef} (parallel): recall@10 {rec:.4f} MRR@10 {mrr_at_k([r.tolist() for r in rr], REL):.4f} "
          f"search median {np.median(ts) * 1e3:.2f} ms p95 {np.percentile(ts, 95) * 1e3:.2f}", flush=True)
