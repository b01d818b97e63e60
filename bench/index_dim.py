"""How short can the index vectors be, for a model with a lexical code (s04 --lex-dim)? Exact search
with the short vectors (the semantic dims + the first L lexical dims, common/index/vectors.index_vectors),
then the full vectors rescoring the top R, against exact search with the full vectors: MRR@10 and
overlap of the top 10. A model without a lexical code is indexed whole: nothing to measure.

    python bench/index_dim.py --data-dir DATA --checkpoint s04_lex.pt

(The reproduction's s04-lex256 condition writes s04_lex.pt; the figures of the round that chose
192-d index vectors are in CHANGES.md.)
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=Path, required=True)
    p.add_argument("--checkpoint", default="best_model.pt")
    p.add_argument("--split", default="validation")
    p.add_argument("--lexical", default="32,64,96,128", help="lexical dims kept (L)")
    p.add_argument("--depths", default="50,100,200", help="candidates rescored (R)")
    args = p.parse_args()
    import torch
    torch.set_num_threads(2)
    from common.corpus import load_corpus
    from common.index.vectors import index_vectors
    from common.encode import encode_rows, load_model
    from common.metrics import mrr_at_k

    c = load_corpus(args.data_dir)
    model, _ = load_model(args.data_dir / args.checkpoint, c.vocab.fingerprint, torch.device("cpu"))
    out_dim, lex_dim = model.config["out_dim"], model.config["lex_dim"]
    if not lex_dim:
        sys.exit(f"{args.checkpoint} has no lexical code (lex_dim 0): its index holds the whole "
                 f"{out_dim}-d vector, so there is no shorter one to measure")
    P = encode_rows(model, c.ptok, np.arange(len(c.ptok)), "passage", torch.device("cpu"))
    qids, rel = c.split_queries(args.split)
    Q = encode_rows(model, c.qtok, c.qidx.rows(qids), "query", torch.device("cpu"), max_len=64)
    ids = c.ptok.ids
    full = np.argsort(-(Q @ P.T), axis=1)[:, :200]
    print(f"{args.split}: {len(qids)} queries, {len(ids):,} passages; full {out_dim + lex_dim}-d vectors, "
          f"exact: MRR@10 {mrr_at_k(ids[full], rel):.4f}")
    for L in (int(x) for x in args.lexical.split(",")):
        dim = out_dim + L
        S = index_vectors(Q, out_dim, lex_dim, dim) @ index_vectors(P, out_dim, lex_dim, dim).T
        top = np.argsort(-S, axis=1)[:, :max(int(x) for x in args.depths.split(","))]
        row = [f"index_dim {dim} (L = {L}): alone {mrr_at_k(ids[top], rel):.4f}"]
        for R in (int(x) for x in args.depths.split(",")):
            cand = top[:, :R]
            sc = np.einsum("qd,qrd->qr", Q, P[cand])
            rr = np.take_along_axis(cand, np.argsort(-sc, axis=1), 1)
            overlap = np.mean([len(set(a[:10]) & set(b[:10])) / 10 for a, b in zip(rr, full)])
            row.append(f"top {R} rescored {mrr_at_k(ids[rr], rel):.4f} (top-10 overlap {overlap:.3f})")
        print(" | ".join(row), flush=True)


if __name__ == "__main__":
    main()
