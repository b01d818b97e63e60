# Scratch: exact search with the short vectors, then rescoring with the full ones, at 1M (see README.md).
import sys, numpy as np, pickle
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[2]))
from common.dense_index import index_vectors
from common.metrics import mrr_at_k
V = np.load("/tmp/mb/vecs1m.npy", mmap_mode="r")
Q = np.load("/tmp/mb/q.npy"); ex = np.load("/tmp/mb/ex.npy")
REL = [set(r) for r in pickle.load(open("/tmp/mb/rel.pkl", "rb"))]
def mrr(rows):
    return mrr_at_k(rows, REL)  # MRR@10 against the test labels (passage rows)
for dim in [int(x) for x in sys.argv[1:]]:
    qc = index_vectors(Q, 64, 256, dim)
    S = np.zeros((len(Q), V.shape[0]), np.float32)
    for lo in range(0, V.shape[0], 100000):
        S[:, lo:lo+100000] = qc @ index_vectors(np.asarray(V[lo:lo+100000]), 64, 256, dim).T
    top = np.argpartition(-S, 200, axis=1)[:, :200]
    top = np.take_along_axis(top, np.argsort(-np.take_along_axis(S, top, 1), axis=1), 1)
    out = [f"dim {dim}: coarse exact MRR {mrr(top):.4f} rec {np.mean([len(set(a[:10])&set(b))/10 for a,b in zip(top, ex)]):.4f}"]
    for R in (50, 100, 200):
        rr = []
        for i in range(len(Q)):
            c = np.sort(top[i, :R]); f = np.asarray(V[c]).astype(np.float16).astype(np.float32)
            rr.append(c[np.argsort(-(f @ Q[i]))[:10]])
        out.append(f"R{R}: MRR {mrr(rr):.4f} rec {np.mean([len(set(a)&set(b))/10 for a,b in zip(rr, ex)]):.4f}")
    print(" | ".join(out), flush=True)
