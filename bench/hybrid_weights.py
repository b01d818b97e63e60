"""Hybrid's figures on a BEIR folder at every dense weight: how much the fusion weight could give there
(a diagnostic: s10 takes s09's weights, tuned on the sample's validation, and never tunes on a BEIR
set; choosing the weight on the judged questions themselves would be training on them).

    python bench/hybrid_weights.py --data-dir data --beir ../shared/trec-dl-2019 --rel-level 2

Needs `s10 --beir DIR` to have prepared and indexed the corpus (data/external/beir-<name>-<hash>/).
The candidates and their features are s10's own (common.evaluation.Evaluator, the checkpoint's
index there); score = w z(cosine) + (1 - w) z(BM25), as s09's hybrid with w_dense 0. Writes nothing.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=Path, default=Path("data"), help="the main data folder")
    p.add_argument("--beir", type=Path, required=True, help="the BEIR folder s10 --beir evaluated")
    p.add_argument("--checkpoint", default="s07_model.pt")
    p.add_argument("--rel-level", type=int, default=1)
    p.add_argument("--step", type=float, default=0.1)
    args = p.parse_args()

    import torch
    from common import beir
    from common.corpus import load_corpus
    from common.evaluation import DEPTH, Evaluator, hybrid_run
    from common.metrics import evaluate
    ext = beir.folder_for(beir.check_dir(args.beir), args.data_dir)
    if not (ext / "passages_tok.parquet").exists():
        sys.exit(f"{ext} is not prepared: run s10_evaluate.py --data-dir {args.data_dir} --beir {args.beir} first")
    ds = beir.Dataset(ext)
    ev = Evaluator(ext, args.data_dir, load_corpus(ext), torch.device("cpu"), log=lambda *a: None)
    if ev.model(args.checkpoint) is None:
        sys.exit(f"{args.data_dir / args.checkpoint} not found: pass --checkpoint")
    d_i, d_s, how = ev.dense(args.checkpoint, ds.qints, DEPTH)  # s10's dense run for hybrid
    feats = ev.hybrid_features(args.checkpoint, ds.qints, ds.texts,
                               [row[np.isfinite(sc)] for row, sc in zip(d_i, d_s)])
    print(f"{ext.name}: {len(ds.qids)} questions, {args.checkpoint} through {how}, rel-level {args.rel_level}")
    print("| dense weight | nDCG@10 | MRR@10 |\n|---:|---:|---:|")
    for w in np.arange(0, 1 + 1e-9, args.step):
        h_i, h_s = hybrid_run(feats, 0.0, float(w), beir.RUN_DEPTH)
        m = evaluate(beir.ranx_run(beir.ranking(ds.qids, h_i, h_s, ds.doc)), ds.qrels, ("ndcg@10", "mrr@10"),
                     rel_level=args.rel_level)
        print(f"| {w:.2f} | {m['ndcg@10']:.4f} | {m['mrr@10']:.4f} |")


if __name__ == "__main__":
    main()
