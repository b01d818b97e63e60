"""What a set of negatives asks of a model: for s01's random triplets and s06's mined ones, the
checkpoint's cosine of each training question to its positive and to its negative, the share of
triplets whose negative sits inside the triplet margin (the only ones the margin loss learns
from) and the mean loss, and which split the negatives' passages come from. A measurement for
choosing methods (README, "What helped and what did not"), not a stage.

    python bench/negatives.py --data-dir data --checkpoint s04_model.pt
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=Path, default=Path("data"))
    p.add_argument("--checkpoint", default="s04_model.pt")
    p.add_argument("--margin", type=float, default=0.2, help="the triplet margin (s04/s07 --margin)")
    args = p.parse_args()
    import pyarrow.parquet as pq
    import torch
    from common.corpus import load_corpus
    from common.encode import encode_rows, load_model
    from common.train import train_set
    torch.set_num_threads(1)
    cpu = torch.device("cpu")
    d = args.data_dir
    corpus = load_corpus(d)
    model, _ = load_model(d / args.checkpoint, corpus.vocab.fingerprint, cpu)
    split_of = {}
    for s, pids in zip(corpus.queries["split"], corpus.queries["passage_ids"]):
        for pid in np.asarray(pids).tolist():
            split_of.setdefault(pid, s)
    print(f"{args.checkpoint}, triplet margin {args.margin}, training split")
    print("| negatives | triplets | cos(q, positive) | cos(q, negative) | inside the margin | mean loss | negatives from train / validation / test |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for name in ["triplets.parquet", "hard_negatives.parquet"]:
        if not (d / name).exists():
            print(f"| {name} | missing | | | | | |")
            continue
        ts = train_set(corpus, pq.read_table(d / name), "train")
        q = encode_rows(model, corpus.qtok, ts.q_rows, "query", cpu)
        pos = (q * encode_rows(model, corpus.ptok, ts.p_rows, "passage", cpu)).sum(1)
        neg = (q * encode_rows(model, corpus.ptok, ts.n_rows, "passage", cpu)).sum(1)
        loss = np.maximum(0.0, args.margin - pos + neg)
        splits = [split_of.get(int(n), "?") for n in ts.nids]
        share = " / ".join(f"{splits.count(s) / len(splits):.1%}" for s in ["train", "validation", "test"])
        print(f"| {name} | {len(ts):,} | {pos.mean():.3f} | {neg.mean():.3f} | {(loss > 0).mean():.1%} | "
              f"{loss.mean():.4f} | {share} |")


if __name__ == "__main__":
    main()
