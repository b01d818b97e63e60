# Scratch: build one Chroma collection of short index vectors and print its insert rate (see README.md).
# usage: ch1m.py N DIM EFC M [key=val ...]  (keys: op=add|upsert, nt=, bs=, sync=, lo=, tag=)
import sys, time, os, shutil, numpy as np
os.environ["ANONYMIZED_TELEMETRY"]="False"
import chromadb
from chromadb.config import Settings
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[2]))
from common.dense_index import index_vectors
n, dim, efc, M = map(int, sys.argv[1:5]); kw = dict(a.split("=") for a in sys.argv[5:])
lo = int(kw.get("lo", 0))
v = np.load(kw.get("src", "/tmp/mb/vecs1m.npy"), mmap_mode="r")
p = f"/tmp/mb/store{kw.get('tag','')}"; shutil.rmtree(p, ignore_errors=True)
c = chromadb.PersistentClient(path=p, settings=Settings(anonymized_telemetry=False))
cfg = {"space":"cosine","ef_construction":efc,"max_neighbors":M,"ef_search":100}
for k, ck in (("nt","num_threads"),("bs","batch_size"),("sync","sync_threshold"),("rf","resize_factor")):
    if k in kw: cfg[ck] = float(kw[k]) if k == "rf" else int(kw[k])
col = c.create_collection("ttt", embedding_function=None, configuration={"hnsw":cfg})
op = getattr(col, kw.get("op","upsert"))
t0=time.time(); cpu0=time.process_time(); last=t0
for s in range(lo, lo+n, 5000):
    e = min(s+5000, lo+n)
    x = index_vectors(np.asarray(v[s:e]), 64, 256, dim) if dim < v.shape[1] else np.asarray(v[s:e])
    op(ids=[str(i) for i in range(s, e)], embeddings=x)
    if (e-lo) % 100000 == 0:
        now=time.time(); print(f"  {e-lo:>8,} {100000/(now-last):,.0f}/s (cum {(e-lo)/(now-t0):,.0f}/s)", flush=True); last=now
dt=time.time()-t0
print(f"n={n} dim={dim} efc={efc} M={M} {kw}: {n/dt:,.0f}/s wall, cpu {time.process_time()-cpu0:.1f}s wall {dt:.1f}s", flush=True)
