# Scratch: recall@10 / MRR@10 of the two-stage search against exact search at 1M (see README.md).
# usage: recall.py EF [depth] [stores...]: two-stage recall@10 vs exact at 1M + chroma query latency
import sys, time, os, numpy as np
os.environ["ANONYMIZED_TELEMETRY"]="False"
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[2]))
import chromadb, torch
from chromadb.config import Settings
from pathlib import Path
from common.dense_index import index_vectors
from common.metrics import mrr_at_k
from common.corpus import load_corpus
from common.encode import encode_rows
ef = int(sys.argv[1]); depth = int(sys.argv[2]) if len(sys.argv) > 2 else 100
stores = sys.argv[3:] or ["/tmp/mb/storeA", "/tmp/mb/storeB"]
V = np.load("/tmp/mb/vecs1m.npy", mmap_mode="r")
d = Path("/tmp/msmarco-bench/run_100000/data")
if not os.path.exists("/tmp/mb/q.npy"):
    torch.set_num_threads(2)
    from common.encode import load_model
    C = load_corpus(d)
    model, _ = load_model(d/"s04_model.pt", C.vocab.fingerprint, torch.device("cpu"))
    qids, rel = C.split_queries("test")
    qids = qids[:300]
    Q = encode_rows(model, C.qtok, C.qidx.rows(qids), "query", torch.device("cpu"), max_len=64)
    # exact top 10 over full vectors (f16-rounded like the vector file)
    best = []
    S = np.zeros((len(Q), V.shape[0]), np.float32)
    for lo in range(0, V.shape[0], 100000):
        S[:, lo:lo+100000] = Q @ np.asarray(V[lo:lo+100000]).astype(np.float16).astype(np.float32).T
    ex = np.argsort(-S, axis=1)[:, :10]
    np.save("/tmp/mb/q.npy", Q); np.save("/tmp/mb/ex.npy", ex)
    rows_rel = [C.pidx.rows(np.array(sorted(r), dtype=np.int64)).tolist() for r in rel[:300]]
    import pickle; pickle.dump(rows_rel, open("/tmp/mb/rel.pkl", "wb"))
Q = np.load("/tmp/mb/q.npy"); ex = np.load("/tmp/mb/ex.npy")
import pickle
if not os.path.exists("/tmp/mb/rel.pkl"):
    C = load_corpus(d); qids, rel = C.split_queries("test")
    pickle.dump([C.pidx.rows(np.array(sorted(r), dtype=np.int64)).tolist() for r in rel[:300]], open("/tmp/mb/rel.pkl", "wb"))
REL = [set(r) for r in pickle.load(open("/tmp/mb/rel.pkl", "rb"))]
def mrr(rows):
    return mrr_at_k(rows, REL)  # MRR@10 against the test labels (passage rows)
NAME = os.environ.get("NAME", "ttt"); DIM = int(os.environ.get("DIM", "192"))
cols = []
for p in stores:
    c = chromadb.PersistentClient(path=p, settings=Settings(anonymized_telemetry=False))
    col = c.get_collection(NAME, embedding_function=None)
    if ef: col.modify(configuration={"hnsw": {"ef_search": ef}})
    cols.append(col)
dim = DIM
qc = index_vectors(Q, 64, 256, dim)
ROWMAP = None
if NAME != "ttt":  # a pipeline index: ids are passage ids -> rows
    import pyarrow.parquet as pq
    pid = pq.read_table(d/"passages_tok.parquet", columns=["passage_id"])["passage_id"].to_numpy()
    ROWMAP = dict(zip(pid.tolist(), range(len(pid))))
tops = []
for col in cols: col.query(query_embeddings=qc[:1], n_results=1)  # load
lat, rec, rec_c = [], [], []
for i in range(len(Q)):
    t = time.perf_counter()
    ids, ds = [], []
    for col in cols:
        r = col.query(query_embeddings=qc[i:i+1], n_results=depth, include=["distances"])
        ids += [int(x) if ROWMAP is None else ROWMAP[int(x)] for x in r["ids"][0]]; ds += r["distances"][0]
    lat.append((time.perf_counter()-t)*1000)
    ids = np.array(ids); ds = np.array(ds)
    coarse = ids[np.argsort(ds)][:depth]
    full = np.asarray(V[np.sort(coarse)]).astype(np.float16).astype(np.float32)
    srt = np.sort(coarse)
    top = srt[np.argsort(-(full @ Q[i]))[:10]]
    rec.append(len(set(top) & set(ex[i]))/10); rec_c.append(len(set(coarse[:10]) & set(ex[i]))/10); tops.append((top, coarse[:10]))
print(f"ef={ef} depth={depth} shards={len(cols)}: recall@10 two-stage {np.mean(rec):.4f}, coarse-only {np.mean(rec_c):.4f}; chroma query median {np.median(lat):.2f} ms p95 {np.percentile(lat,95):.2f}; MRR@10 exact {mrr(ex):.4f} two-stage {mrr([t[0] for t in tops]):.4f} coarse {mrr([t[1] for t in tops]):.4f}")
