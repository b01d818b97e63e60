# Scratch: a raw hnswlib or faiss HNSW graph over the first N vectors (no Chroma), M 16: build rate.
# usage: raw_graph.py hnswlib|faiss N DIM EFC [THREADS]   (hnswlib: pip install hnswlib, not in requirements)
import sys, time, numpy as np
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[2]))
from common.dense_index import index_vectors
lib, n, dim, efc = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
nt = int(sys.argv[5]) if len(sys.argv) > 5 else 1
v = np.load("/tmp/mb/vecs1m.npy", mmap_mode="r")
x = index_vectors(np.asarray(v[:n]), 64, 256, dim) if dim < 320 else np.asarray(v[:n])
t0 = time.time(); c0 = time.process_time()
if lib == "faiss":
    import faiss; faiss.omp_set_num_threads(nt)
    idx = faiss.IndexHNSWFlat(dim, 16, faiss.METRIC_INNER_PRODUCT); idx.hnsw.efConstruction = efc
    for s in range(0, n, 5000): idx.add(x[s:s+5000])
else:
    import hnswlib
    idx = hnswlib.Index(space="ip", dim=dim); idx.init_index(max_elements=n, ef_construction=efc, M=16); idx.set_num_threads(nt)
    for s in range(0, n, 5000): idx.add_items(x[s:s+5000], np.arange(s, min(s+5000, n)))
dt = time.time() - t0
print(f"{lib} n={n} dim={dim} efc={efc} nt={nt}: {n/dt:,.0f}/s cpu {time.process_time()-c0:.1f}s", flush=True)
