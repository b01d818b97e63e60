# Scratch: latency of querying the shards one after the other vs in parallel threads (see README.md).
import os, time, sys, numpy as np
os.environ["ANONYMIZED_TELEMETRY"]="False"
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[2]))
import chromadb
from chromadb.config import Settings
from concurrent.futures import ThreadPoolExecutor
from common.dense_index import index_vectors
ef = int(sys.argv[1])
Q = index_vectors(np.load("/tmp/mb/q.npy"), 64, 256, 192)
cols = []
for p in tuple(sys.argv[2:]) or ("/tmp/mb/storeC", "/tmp/mb/storeD"):
    col = chromadb.PersistentClient(path=p, settings=Settings(anonymized_telemetry=False)).get_collection(os.environ.get("NAME","ttt"), embedding_function=None)
    col.modify(configuration={"hnsw": {"ef_search": ef}}); cols.append(col)
for c in cols: c.query(query_embeddings=Q[:1], n_results=1)
ex = ThreadPoolExecutor(2)
def one(c, q): return c.query(query_embeddings=q, n_results=int(os.environ.get("NR", "100")), include=["distances"])
for mode in ("seq", "par", "seq", "par"):
    lat = []
    for i in range(200):
        t = time.perf_counter()
        if mode == "seq": [one(c, Q[i:i+1]) for c in cols]
        else: list(ex.map(lambda c: one(c, Q[i:i+1]), cols))
        lat.append((time.perf_counter()-t)*1000)
    print(ef, mode, f"median {np.median(lat):.2f} ms")
