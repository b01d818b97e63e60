# Scratch: encode the 1M benchmark passages with its s04 model (see bench/hnsw/README.md).
import sys, time, numpy as np, torch
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[2])); torch.set_num_threads(2)
from pathlib import Path
from common.corpus import load_vocab
from common.encode import load_model, encode_rows
from common.vocab import TokenTable
d = Path("/tmp/msmarco-bench/run_100000/data")
vocab, _ = load_vocab(d)
model, ck = load_model(d/"s04_model.pt", vocab.fingerprint, torch.device("cpu"))
t = TokenTable.read(d/"passages_tok.parquet", "passage_id")
out = np.lib.format.open_memmap("/tmp/mb/vecs1m.npy", mode="w+", dtype=np.float32, shape=(len(t.ids), model.dim))
for s in range(0, len(t.ids), 100000):
    r = np.arange(s, min(s+100000, len(t.ids)))
    out[r] = encode_rows(model, t, r, "passage", torch.device("cpu"), batch_size=512, max_len=256)
out.flush(); print("done", out.shape)
