"""Stage 10: measure retrieval quality, side by side with baselines.

For a split (default test), every query ranks the WHOLE pool (every unique passage of all splits)
through its index as s09 queries it; MRR@10, Recall@10, Recall@100 and nDCG@10 (ranx) for:
BM25 (bm25s + Snowball stemmer), the untrained GloVe average, the s04 model, the s07 model, and
hybrid (the active model fused with BM25; its weight tuned on the validation split). Where queries
have several candidate passages (real v1.1 rows) the "rerank the query's own candidates" setting is
reported separately. Writes data/reports/eval_<split>.{json,md} and a Recall@k PNG; logs to W&B.

    python s10_evaluate.py                        # test split of the data in data/
    python s10_evaluate.py --source ../shared/msmarco-sample --checkpoint best_model.pt
        # another dataset in the MS MARCO layout: its pool is indexed into its own collection
        # (under data/external/...) with that checkpoint; the main index is left alone.

Expected on ../shared/msmarco-sample (test split): see README.md, "Reproduction".
"""
import hashlib
import shutil
from pathlib import Path

import numpy as np

from common import cli, tracking, vector_store
from common.artifacts import StageError, require, run_main, write_json, write_manifest
from common.corpus import load_corpus
from common.evaluation import Evaluator, hybrid_run, metrics_for, recall_curve, tune_hybrid, write_reports

KS = [1, 2, 3, 5, 10, 20, 30, 50, 100]


def prepare_external(args, log=print) -> Path:
    """Combine and tokenise another dataset with the main vocabulary into data/external/<name>/."""
    from common import msmarco
    from common.vocab import Vocab, tokenize_with_vocab
    msmarco.check_source(args.source, args.config)
    slug = Path(args.source).resolve().name + "-" + hashlib.sha1(str(Path(args.source).resolve()).encode()).hexdigest()[:8]
    ext = args.data_dir / "external" / slug
    ext.mkdir(parents=True, exist_ok=True)
    vm = require(args.data_dir / "vocab.pkl")
    em = require(args.data_dir / "embeddings.npy")
    stamp = ext / "prepared.json"
    if not (stamp.exists() and vector_store.read_json(stamp).get("vocab") == vm["fingerprint"]):
        log(f"preparing {args.source} under {ext} ...")
        splits = ((s, msmarco.iter_local(args.source, args.config, s, 10_000)) for s in msmarco.SPLITS)
        rep = msmarco.combine(ext / "queries.parquet", ext / "passages.parquet", splits)
        qm = write_manifest(ext / "queries.parquet", "s10_evaluate.py", {"source": args.source}, stats=rep)
        pm = write_manifest(ext / "passages.parquet", "s10_evaluate.py", {"source": args.source}, inputs={"queries": qm})
        shutil.copyfile(args.data_dir / "vocab.pkl", ext / "vocab.pkl")
        shutil.copyfile(args.data_dir / "embeddings.npy", ext / "embeddings.npy")
        vm2 = write_manifest(ext / "vocab.pkl", "s10_evaluate.py", vm["settings"], inputs={"queries": qm, "passages": pm},
                             fingerprint=vm["fingerprint"])
        write_manifest(ext / "embeddings.npy", "s10_evaluate.py", em["settings"], inputs={"vocab": vm2})
        vocab = Vocab.load(ext / "vocab.pkl")
        for name, src, id_col, text_col, ml in (("passages_tok.parquet", "passages.parquet", "passage_id", "text", 256),
                                                ("queries_tok.parquet", "queries.parquet", "query_id", "query", 64)):
            tokenize_with_vocab(vocab, ext / src, id_col, text_col, ext / name, ml)
            write_manifest(ext / name, "s10_evaluate.py", {}, inputs={"vocab": vm2})
        write_json(stamp, {"vocab": vm["fingerprint"], "source": str(args.source)})
    return ext


def main():
    p = cli.parser(__doc__)
    p.add_argument("--split", default="test", choices=["test", "validation", "train"])
    p.add_argument("--source", default=None, help="evaluate on another dataset in the MS MARCO layout")
    p.add_argument("--config", default="v1.1")
    p.add_argument("--checkpoint", default=None,
                   help="model for hybrid (and for --source); default: the active index's model")
    p.add_argument("--name", default=None, help="report name (default eval_<split>)")
    vector_store.add_args(p)
    cli.add_device(p)
    cli.add_wandb(p)
    args = p.parse_args()
    t = cli.Timer()
    device = cli.setup_torch(args)
    main_dir = args.data_dir
    if args.source:
        ckpt_name = args.checkpoint or "best_model.pt"
        eval_dir = prepare_external(args)
        client = vector_store.client(eval_dir, args.chroma_host, args.chroma_port)
    else:
        active = vector_store.active(main_dir)
        ckpt_name = args.checkpoint or active["checkpoint"]
        eval_dir = main_dir
        client = vector_store.client_from_args(args) if not active.get("chroma_host") else \
            vector_store.client(main_dir, active["chroma_host"], active["chroma_port"])
    corpus = load_corpus(eval_dir)
    ev = Evaluator(eval_dir, main_dir, corpus, device, client)
    if ev.model(ckpt_name) is None:
        raise StageError(f"{main_dir / ckpt_name} not found: run s04_train_tower.py (and s07) first")
    if args.source:  # index the external pool with the checkpoint, in its own index under eval_dir
        from common.indexing import index_checkpoint
        index_checkpoint(eval_dir, main_dir / ckpt_name, client, device)

    # ---- hybrid weight and the best mode, on validation (never on the split being reported)
    hybrid_path = eval_dir / "reports" / "hybrid.json"
    vq, vt, vr, _ = ev.split("validation")
    w_dense, w_sem, val_modes = 0.0, 0.35, {}
    if len(vq):
        d_i, d_s, _ = ev.dense(ckpt_name, vq)
        b_i, b_s = ev.bm25_run(vt)
        feats = ev.hybrid_features(ckpt_name, vq, vt, d_i)
        (w_dense, w_sem), grid = tune_hybrid(vr, feats)
        h_i, h_s = hybrid_run(feats, w_dense, w_sem)
        val_modes = {"dense": metrics_for(vq, vr, d_i, d_s)["mrr@10"], "bm25": metrics_for(vq, vr, b_i, b_s)["mrr@10"],
                     "hybrid": metrics_for(vq, vr, h_i, h_s)["mrr@10"]}
        best_mode = max(val_modes, key=val_modes.get)
        write_json(hybrid_path, {"w_dense": w_dense, "w_sem": w_sem, "best_mode": best_mode,
                                 "validation_mrr@10": val_modes, "checkpoint": ckpt_name,
                                 "grid": {f"{k[0]} {k[1]}": v for k, v in grid.items()}})
        print(f"validation MRR@10: dense {val_modes['dense']:.4f}, bm25 {val_modes['bm25']:.4f}, hybrid "
              f"{val_modes['hybrid']:.4f} (weights dense {w_dense}, semantic {w_sem}); s09's default mode: {best_mode}")
    weights = {"dense": w_dense, "sem": w_sem, "bm25": round(1 - w_dense - w_sem, 2)}

    # ---- the split
    qids, texts, rel, _ = ev.split(args.split)
    if not len(qids):
        raise StageError(f"no {args.split} query has a selected passage: nothing to evaluate")
    systems = {}
    systems["BM25 (bm25s, stemmed)"] = (*ev.bm25_run(texts), "bm25")
    systems["GloVe average (untrained)"] = (*ev.glove(qids), "exact")
    for name in ("s04_model.pt", "s07_model.pt"):
        if (args.source is None or name == ckpt_name) and ev.model(name) is not None:
            systems[name.split("_")[0] + " two-tower"] = ev.dense(name, qids)
    if args.source and ckpt_name not in ("s04_model.pt", "s07_model.pt"):
        systems[f"{ckpt_name} two-tower"] = ev.dense(ckpt_name, qids)
    d_i, d_s, dense_how = ev.dense(ckpt_name, qids)
    b_i, b_s, _ = systems["BM25 (bm25s, stemmed)"]
    h_i, h_s = hybrid_run(ev.hybrid_features(ckpt_name, qids, texts, d_i), w_dense, w_sem)
    systems[f"hybrid ({ckpt_name.split('_')[0]} + BM25)"] = (h_i, h_s, dense_how + "+bm25")

    rows, curves = [], {}
    for name, (ids, sc, how) in systems.items():
        m = metrics_for(qids, rel, ids, sc)
        rows.append({"system": name, "search": how, **m})
        curves[name] = (KS, recall_curve(ids, rel, KS))
    # the index against exact search, for the model s09 uses
    ex_i, _ = ev.dense_exact(ckpt_name, qids, 10)
    index_recall = float(np.mean([len(set(a[:10]) & set(b[:10])) / 10 for a, b in zip(d_i, ex_i)])) if dense_how != "exact" else None

    result = {"split": args.split, "queries": int(len(qids)), "pool": int(len(corpus.ptok)), "full_pool": rows,
              "hybrid_weights": weights, "validation_mrr@10": val_modes, "checkpoint": ckpt_name,
              "index_recall_at_10": index_recall, "index_backend": dense_how, "data_dir": str(eval_dir), "seconds": None}

    # ---- rerank-own-candidates setting, where queries have several candidates
    rq, rt, rr, rc = ev.split(args.split, rerank=True)
    if len(rq):
        rer = []
        for label, kind, ck in [("BM25", "bm25", None), ("GloVe average (untrained)", "glove", None)] + \
                [(n.split("_")[0] + " two-tower", "dense", n) for n in ("s04_model.pt", "s07_model.pt")
                 if ev.model(n) is not None]:
            ids, sc = ev.rerank_scores(kind, rt, rq, rc, ck)
            rer.append({"system": label, **metrics_for(rq, rr, ids, sc)})
        ids, sc = ev.rerank_scores("hybrid", rt, rq, rc, ckpt_name, weights=(w_dense, w_sem))
        rer.append({"system": "hybrid", **metrics_for(rq, rr, ids, sc)})
        result["rerank"] = rer
        result["rerank_queries"] = int(len(rq))

    result["seconds"] = round(t.s, 1)
    run = tracking.init(args.wandb, args.wandb_project, main_dir, "s10_evaluate", vars(args))
    name = args.name or f"eval_{args.split}"
    paths = write_reports(eval_dir / "reports", name, result, curves, run)
    run.finish()
    from common.evaluation import markdown
    print(markdown(result))
    cli.done(f"{paths['json']}, {paths['md']} and {paths['png']}", t)


if __name__ == "__main__":
    run_main(main)
