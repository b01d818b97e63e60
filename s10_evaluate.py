"""Stage 10: measure retrieval quality, side by side with baselines.

For a split (default test), every query ranks the WHOLE pool (every unique passage of all splits)
through its index as s09 queries it; MRR@10, Recall@10, Recall@100 and nDCG@10 (ranx) for:
BM25 (bm25s, k1 0.9 b 0.4, English stopwords, Snowball stemmer; --bm25-k1/--bm25-b), the
untrained GloVe average, the s04 model, the s07 model, and hybrid (the active model fused with
BM25; its weight tuned on the validation split). Where queries have several candidate passages
(real v1.1 rows) the "rerank the query's own candidates" setting is reported separately. Writes
data/reports/eval_<split>.{json,md} and a Recall@k PNG; logs to W&B.

    python s10_evaluate.py                        # test split of the data in data/ (v2.1: validation)
    python s10_evaluate.py --source ../shared/msmarco-sample --checkpoint best_model.pt
        # another dataset in the MS MARCO layout: its pool is indexed into its own index
        # (under data/external/...) with that checkpoint; the main index is left alone.

    python s10_evaluate.py --beir ../shared/trec-dl-2019 --rerank ../shared/trec-dl-2019/runs/bm25.trec --rel-level 2
        # a dataset in the BEIR layout (corpus.jsonl, queries.jsonl, qrels/test.tsv), prepared into
        # data/external/beir-<name>-<hash>/ (s09 --data-dir that folder searches it) and indexed
        # with each checkpoint; whole corpus, and with --rerank each query's top 100 of a TREC run
        # file re-scored. nDCG@10 with the graded labels; MRR@10 and Recall count grade >=
        # --rel-level. Hybrid takes s09's weights (data/reports/hybrid.json), tuned on nothing here.
        # Writes data/reports/<dataset>_<setting>.{json,md} and data/reports/runs/*.trec.

Every system's ranking (top 100 per query) is also written as a TREC run file into
data/reports/runs/<dataset>.<system>.<setting>.trec. Each system's run is kept in chunks of
--chunk-queries questions (data/reports/s10.chunks/) until the reports are written: killed
part-way, a re-run resumes at the last finished chunk.

Expected on ../shared/msmarco-sample (test split): see README.md, "Reproduction".
"""
import hashlib
from pathlib import Path

import numpy as np

from common import beir, cli, tracking
from common import bm25 as bm25_mod
from common.artifacts import BadSetting, MissingInput, StageError, require, run_main, write_json
from common.corpus import load_corpus
from common.stages import script
from common.evaluation import CHUNK, Evaluator, hybrid_run, metrics_for, recall_curve, tune_hybrid, write_reports
from common.index import build as index_build, chroma_graph, store
from common.retrieval import DEFAULT_WEIGHTS

KS = [1, 2, 3, 5, 10, 20, 30, 50, 100]


def prepare_external(args, log=print) -> Path:
    """Another dataset in the MS MARCO layout as a data folder of its own, data/external/<name>/:
    combined as s00 does and tokenised as s02 does with the main vocabulary and token limits,
    once for each of them (every file recorded as made by s10)."""
    from common import msmarco
    from common.artifacts import mark_prepared, prepared_for
    from common.vocab import recorded_token_limits, token_limits, tokenize_with_main_vocab
    msmarco.check_source(args.source, args.config)
    src = Path(args.source).resolve()
    ext = args.data_dir / "external" / (src.name + "-" + hashlib.sha1(str(src).encode()).hexdigest()[:8])
    want = {"vocab": require(args.data_dir / "vocab.pkl")["fingerprint"], "limits": recorded_token_limits(args.data_dir)}
    if not prepared_for(ext, want, defaults={"limits": token_limits()}):
        ext.mkdir(parents=True, exist_ok=True)
        log(f"preparing {args.source} under {ext} ...")
        _, qm, pm = msmarco.combine_into(ext, args.source, args.config, "s10_evaluate.py")
        tokenize_with_main_vocab(args.data_dir, ext, "s10_evaluate.py", qm, pm)
        mark_prepared(ext, dict(want, source=str(args.source)))
    return ext


def _stem(ckpt_name: str) -> str:
    """s07_model.pt -> s07; best_model.pt -> best; other.pt -> other."""
    stem = Path(ckpt_name).stem
    return stem[:-len("_model")] if stem.endswith("_model") else stem


def _write_run(main_dir: Path, dataset: str, slug: str, setting: str, run: dict) -> Path:
    """data/reports/runs/<dataset>.<system>.<setting>.trec (under the MAIN data dir)."""
    safe = lambda x: "".join(c if c.isalnum() or c in "-_+" else "_" for c in x)
    path = Path(main_dir) / "reports" / "runs" / f"{safe(dataset)}.{safe(slug)}.{safe(setting)}.trec"
    return beir.write_run(path, run, slug)


BEIR_METRICS = ("ndcg@10", "mrr@10", "recall@10", "recall@100")


def beir_markdown(rep: dict) -> str:
    lvl = rep["rel_level"]
    cols = ["nDCG@10", "MRR@10", "Recall@10", "Recall@100"]
    where = "whole corpus" if rep["setting"] == "full" else \
        f"each query's top {rep['rerank_depth']} of {Path(rep['rerank_file']).name} re-scored"
    lines = [f"### {rep['dataset']}, {where}: {rep['queries']:,} queries, {rep['corpus']:,} documents\n\n",
             "| system | search | " + " | ".join(cols) + " |\n", "|---|---|" + "---:|" * len(cols) + "\n"]
    for r in rep["systems"]:
        lines.append(f"| {r['system']} | {r['search']} | " + " | ".join(f"{r[m]:.4f}" for m in BEIR_METRICS) + " |\n")
    w = rep["hybrid_weights"]
    lines.append(f"\nnDCG@10 with the graded labels; MRR@10 and Recall count grade >= {lvl} as relevant. "
                 f"Hybrid = {w['dense']} z(cosine) + {w['sem']} z(semantic-part cosine) + {w['bm25']} z(BM25), "
                 f"s09's weights ({w['from']}), not tuned here. Run files: {Path(rep['systems'][0]['run_file']).parent}\n")
    if rep.get("missing_candidates"):
        lines.append(f"\n{rep['missing_candidates']:,} run-file documents are not in the corpus (left out).\n")
    return "".join(lines)


def evaluate_beir(args, device, bm25_params: dict, t):
    """s10 --beir DIR [--rerank RUNFILE]: the BEIR dataset in its own data folder under
    data/external/, every system over the whole corpus (and re-scoring RUNFILE's top 100), graded
    nDCG@10. Never writes the main index, data/active_index.json or data/reports/hybrid.json."""
    import os
    from common.artifacts import atomic_path
    from common.metrics import evaluate
    from common.search import load_hybrid
    main_dir = Path(args.data_dir)
    src = beir.check_dir(args.beir)
    run_in = beir.read_run(Path(args.rerank)) if args.rerank else None  # a broken run file: say so before any work
    dataset = src.resolve().name
    if args.checkpoint:
        ckpt_name = args.checkpoint
    else:
        try:
            ckpt_name = store.active(main_dir)["checkpoint"]  # the model s09 answers with
        except StageError:
            ckpt_name = "best_model.pt"
    if not (main_dir / ckpt_name).exists():
        raise MissingInput(main_dir / ckpt_name, f"{script('s04')} (and s07)",
                           message=f"{main_dir / ckpt_name} not found: run {script('s04')} (and s07) first, "
                                   f"or pass --checkpoint")
    ext = beir.prepare(src, main_dir)
    ds = beir.Dataset(ext)
    corpus = load_corpus(ext)
    ev = Evaluator(ext, main_dir, corpus, device, bm25_params=bm25_params, chroma_host=args.chroma_host,
                   chroma_port=args.chroma_port)
    opts = index_build.BuildOptions(host=args.chroma_host, port=args.chroma_port)
    if ev.model(ckpt_name) is None:
        raise MissingInput(main_dir / ckpt_name, f"{script('s04')} (and s07)")

    # the checkpoints: s04, s07 where present, and the chosen one (one row per distinct model)
    dense, fp_label = [], {}
    for name in ("s04_model.pt", "s07_model.pt", ckpt_name):
        if ev.model(name) is None:
            continue
        fp = ev.model(name)[1]["fingerprint"]
        if fp in fp_label:
            continue
        fp_label[fp] = _stem(name)
        dense.append(name)
    chosen = fp_label[ev.model(ckpt_name)[1]["fingerprint"]]
    states = {}
    for name in dense:  # each indexed as s09 would search it, in the BEIR folder's own index
        states[name] = index_build.build_index(ext, main_dir / name, device, opts)
    # s09 --data-dir <that folder>: the chosen model's index, the checkpoint read from the main folder,
    # and s09's weights
    extra = {"chroma_host": args.chroma_host, "chroma_port": args.chroma_port,
             "checkpoint": os.path.relpath(main_dir / ckpt_name, ext)}
    chosen_index = states[next(n for n in dense if fp_label[ev.model(n)[1]["fingerprint"]] == chosen)]
    store.activate(ext, dict(chosen_index, checkpoint_manifest=require(main_dir / ckpt_name)["fingerprint"]), extra)
    tuned = load_hybrid(main_dir) or {}
    w_dense, w_sem = tuned.get("w_dense", DEFAULT_WEIGHTS[0]), tuned.get("w_sem", DEFAULT_WEIGHTS[1])
    weights = {"dense": w_dense, "sem": w_sem, "bm25": round(1 - w_dense - w_sem, 2),
               "from": str(main_dir / "reports" / "hybrid.json") if tuned else "defaults: no data/reports/hybrid.json"}
    write_json(ext / "reports" / "hybrid.json", {"w_dense": w_dense, "w_sem": w_sem, "bm25": bm25_params,
                                                 "best_mode": tuned.get("best_mode", "hybrid"),
                                                 "copied_from": weights["from"], "checkpoint": ckpt_name})

    qids, texts, qints = ds.qids, ds.texts, ds.qints
    hy_name = f"hybrid ({chosen} + BM25)"
    runs = {"full": []}  # setting -> [(system, slug, search, run)]
    rank = lambda ids, sc, keep=None: beir.ranking(qids, ids, sc, ds.doc, keep=keep)
    b_i, b_s = ev.bm25_run(texts, beir.RUN_DEPTH)
    runs["full"].append((bm25_mod.label(bm25_params), "bm25", "bm25", rank(b_i, b_s, lambda x: x > 0)))
    g_i, g_s = ev.glove(qints, beir.RUN_DEPTH)
    runs["full"].append(("GloVe average (untrained)", "glove", "exact", rank(g_i, g_s)))
    d_chosen = None
    for name in dense:
        d_i, d_s, how = ev.dense(name, qints)
        runs["full"].append((f"{fp_label[ev.model(name)[1]['fingerprint']]} two-tower", "dense-" + _stem(name), how,
                             rank(d_i, d_s)))
        if fp_label[ev.model(name)[1]["fingerprint"]] == chosen:
            # (a corpus smaller than the depth pads each row: id 0, score -inf)
            d_chosen = ([row[np.isfinite(sc)] for row, sc in zip(d_i, d_s)], how)
    h_i, h_s = hybrid_run(ev.hybrid_features(ckpt_name, qints, texts, d_chosen[0]), w_dense, w_sem, beir.RUN_DEPTH)
    runs["full"].append((hy_name, f"hybrid-{chosen}", d_chosen[1] + "+bm25", rank(h_i, h_s)))

    missing = 0
    if run_in is not None:
        setting = "rerank-" + Path(args.rerank).stem
        cands, file_scores, missing = ds.candidates(run_in, beir.RUN_DEPTH)
        has = [n for n, c in enumerate(cands) if c]
        sub = lambda xs: [xs[n] for n in has]

        def rerank(kind, ck=None, w=None):
            ids, sc = ev.rerank_scores(kind, sub(texts), qints[has], sub(cands), ck, weights=w) if has else ([], [])
            full_i, full_s = [[] for _ in qids], [[] for _ in qids]
            for n, i, s in zip(has, ids, sc):
                full_i[n], full_s[n] = i, s
            return rank(full_i, full_s)
        rr = [(f"run file order ({Path(args.rerank).name})", "runfile", "run file",
               rank(cands, file_scores)),
              (bm25_mod.label(bm25_params), "bm25", "candidates", rerank("bm25")),
              ("GloVe average (untrained)", "glove", "candidates", rerank("glove"))]
        for name in dense:
            rr.append((f"{fp_label[ev.model(name)[1]['fingerprint']]} two-tower", "dense-" + _stem(name), "candidates",
                       rerank("dense", name)))
        rr.append((hy_name, f"hybrid-{chosen}", "candidates", rerank("hybrid", ckpt_name, (w_dense, w_sem))))
        runs[setting] = rr

    reports, mds = [], []
    run = tracking.init(args.wandb, args.wandb_project, main_dir, "s10_evaluate", vars(args))
    for setting, systems in runs.items():
        rows = []
        for label, slug, how, r in systems:
            m = evaluate(beir.ranx_run(r), ds.qrels, BEIR_METRICS, rel_level=args.rel_level)
            f = _write_run(main_dir, dataset, slug, setting, r)
            rows.append({"system": label, "slug": slug, "search": how, **m, "run_file": str(f)})
        n_eval = sum(1 for q in ds.qrels.values() if q and max(q.values()) >= args.rel_level)
        rep = {"dataset": dataset, "setting": setting, "beir_dir": str(src.resolve()), "queries": n_eval,
               "corpus": int(len(corpus.ptok)), "rel_level": args.rel_level, "metrics": list(BEIR_METRICS),
               "systems": rows, "hybrid_weights": weights, "checkpoint": ckpt_name, "bm25": bm25_params,
               "data_dir": str(ext), "rerank_file": str(Path(args.rerank).resolve()) if setting != "full" else None,
               "rerank_depth": beir.RUN_DEPTH if setting != "full" else None,
               "missing_candidates": missing if setting != "full" else None, "seconds": round(t.s, 1)}
        name = f"{dataset}_{setting}"
        write_json(main_dir / "reports" / f"{name}.json", rep)
        md = beir_markdown(rep)
        with atomic_path(main_dir / "reports" / f"{name}.md") as tmp:
            tmp.write_text(md)
        reports.append(main_dir / "reports" / f"{name}.json")
        mds.append(md)
        try:
            import wandb
            if not isinstance(run, tracking._Null):
                cols = ["system", "search"] + list(BEIR_METRICS)
                run.log({f"{name}/table": wandb.Table(columns=cols, data=[[r["system"], r["search"]] +
                                                                         [r[m] for m in BEIR_METRICS] for r in rows])})
        except Exception as e:
            print(f"warning: could not log to W&B: {e}")
    run.finish()
    print("\n".join(mds))
    cli.done(f"{', '.join(str(p) for p in reports)} (+ .md), run files in {main_dir / 'reports' / 'runs'}; "
             f"search it with s09_query_retrieve.py --data-dir {ext}", t)


def main(argv=None, on_saved=None):
    """on_saved(n): called after each kept chunk of questions (tests kill the stage there)."""
    p = cli.parser(__doc__)
    p.add_argument("--split", default="auto", choices=["auto", "test", "validation", "train"],
                   help="auto: test, or validation when the test split has no labels (v2.1); reporting on "
                        "validation tunes hybrid on one half of it and reports on the other")
    p.add_argument("--max-queries", type=cli.nonneg_int_zero_means("all"), default=10_000,
                   help="questions per split at most (a fixed sample by id), bounding s10's time at v2.1 scale")
    p.add_argument("--source", default=None, help="evaluate on another dataset in the MS MARCO layout")
    p.add_argument("--config", default="v1.1")
    p.add_argument("--checkpoint", default=None,
                   help="model for hybrid (and for --source); default: the active index's model")
    p.add_argument("--name", default=None, help="report name (default eval_<split>)")
    p.add_argument("--beir", default=None, metavar="DIR",
                   help="evaluate on a dataset in the BEIR layout (corpus.jsonl, queries.jsonl, qrels/test.tsv)")
    p.add_argument("--rerank", default=None, metavar="RUNFILE",
                   help="with --beir: also re-score each query's top 100 of this TREC run file")
    p.add_argument("--rel-level", type=cli.positive_int, default=1,
                   help="with --beir: grade counted as relevant by MRR and Recall (1: BEIR's rule; TREC DL: 2)")
    p.add_argument("--chunk-queries", type=cli.positive_int, default=CHUNK,
                   help="questions per kept chunk of each system's run: killed, s10 resumes at the last finished one")
    p.add_argument("--bm25-k1", type=cli.nonneg_float, default=bm25_mod.K1, help="BM25 k1")
    p.add_argument("--bm25-b", type=cli.fraction, default=bm25_mod.B, help="BM25 b")
    chroma_graph.add_args(p)
    cli.add_device(p)
    cli.add_wandb(p)
    args = p.parse_args(argv)
    t = cli.Timer()
    if args.beir and args.source:
        raise BadSetting("--beir and --source are two different datasets: give one")
    if (args.rerank or args.rel_level != 1) and not args.beir:
        raise BadSetting("--rerank and --rel-level are for --beir")
    if args.rel_level < 1:
        raise BadSetting("--rel-level must be 1 or more")
    bm25_params = bm25_mod.params(k1=args.bm25_k1, b=args.bm25_b)
    device = cli.setup_torch(args)
    main_dir = args.data_dir
    if args.beir:
        return evaluate_beir(args, device, bm25_params, t)
    if args.source:
        ckpt_name = args.checkpoint or "best_model.pt"
        eval_dir = prepare_external(args)
        host, port = args.chroma_host, args.chroma_port
    else:
        active = store.active(main_dir)
        ckpt_name = args.checkpoint or active["checkpoint"]
        eval_dir = main_dir
        host, port = (args.chroma_host, args.chroma_port) if not active.get("chroma_host") else \
            (active["chroma_host"], active["chroma_port"])
    corpus = load_corpus(eval_dir)
    ev = Evaluator(eval_dir, main_dir, corpus, device, bm25_params=bm25_params, chroma_host=host, chroma_port=port,
                   keep=eval_dir / "reports" / "s10.chunks", chunk=args.chunk_queries, on_saved=on_saved)
    if ev.model(ckpt_name) is None:
        raise MissingInput(main_dir / ckpt_name, f"{script('s04')} (and s07)")
    if args.source:  # index the external pool with the checkpoint, in its own index under eval_dir
        index_build.build_index(eval_dir, main_dir / ckpt_name, device, index_build.BuildOptions(host=host, port=port))

    # ---- hybrid weight and the best mode, on validation (never on the split being reported)
    hybrid_path = eval_dir / "reports" / "hybrid.json"
    split = args.split
    if split == "auto":
        split = "test" if len(ev.split("test")[0]) else "validation"
        if split == "validation":
            print("the test split has no labelled questions (v2.1's are unlabelled): reporting on the half of "
                  "validation that hybrid is not tuned on")
    halves = split == "validation"  # tune and report on disjoint halves of one split
    vq, vt, vr, _ = ev.split("validation", part="tune" if halves else None, max_queries=args.max_queries)
    (w_dense, w_sem), val_modes = DEFAULT_WEIGHTS, {}
    if len(vq):
        d_i, d_s, _ = ev.dense(ckpt_name, vq)
        b_i, b_s = ev.bm25_run(vt, qids=vq)
        feats = ev.hybrid_features(ckpt_name, vq, vt, d_i)
        (w_dense, w_sem), grid = tune_hybrid(vr, feats)
        h_i, h_s = hybrid_run(feats, w_dense, w_sem)
        val_modes = {"dense": metrics_for(vq, vr, d_i, d_s)["mrr@10"], "bm25": metrics_for(vq, vr, b_i, b_s)["mrr@10"],
                     "hybrid": metrics_for(vq, vr, h_i, h_s)["mrr@10"]}
        best_mode = max(val_modes, key=val_modes.get)
        write_json(hybrid_path, {"w_dense": w_dense, "w_sem": w_sem, "best_mode": best_mode,
                                 "validation_mrr@10": val_modes, "checkpoint": ckpt_name, "bm25": bm25_params,
                                 "grid": {f"{k[0]} {k[1]}": v for k, v in grid.items()}})
        print(f"validation MRR@10: dense {val_modes['dense']:.4f}, bm25 {val_modes['bm25']:.4f}, hybrid "
              f"{val_modes['hybrid']:.4f} (weights dense {w_dense}, semantic {w_sem}); s09's default mode: {best_mode}")
    weights = {"dense": w_dense, "sem": w_sem, "bm25": round(1 - w_dense - w_sem, 2)}

    # ---- the split
    qids, texts, rel, _ = ev.split(split, part="report" if halves else None, max_queries=args.max_queries)
    if not len(qids):
        raise StageError(f"no {split} query has a selected passage: nothing to evaluate")
    systems, slugs = {}, {}
    bm25_name = bm25_mod.label(bm25_params)
    systems[bm25_name] = (*ev.bm25_run(texts, qids=qids), "bm25")
    systems["GloVe average (untrained)"] = (*ev.glove(qids), "exact")
    slugs[bm25_name], slugs["GloVe average (untrained)"] = "bm25", "glove"
    for name in ("s04_model.pt", "s07_model.pt"):
        if (args.source is None or name == ckpt_name) and ev.model(name) is not None:
            systems[name.split("_")[0] + " two-tower"] = ev.dense(name, qids)
            slugs[name.split("_")[0] + " two-tower"] = "dense-" + name.split("_")[0]
    if args.source and ckpt_name not in ("s04_model.pt", "s07_model.pt"):
        systems[f"{ckpt_name} two-tower"] = ev.dense(ckpt_name, qids)
        slugs[f"{ckpt_name} two-tower"] = "dense-" + _stem(ckpt_name)
    d_i, d_s, dense_how = ev.dense(ckpt_name, qids)
    h_i, h_s = hybrid_run(ev.hybrid_features(ckpt_name, qids, texts, d_i), w_dense, w_sem)
    systems[f"hybrid ({ckpt_name.split('_')[0]} + BM25)"] = (h_i, h_s, dense_how + "+bm25")
    slugs[f"hybrid ({ckpt_name.split('_')[0]} + BM25)"] = "hybrid-" + _stem(ckpt_name)

    rows, curves = [], {}
    dataset = (Path(args.source).resolve().name if args.source else "msmarco") + f"-{split}"
    qstr = [str(q) for q in qids]
    for name, (ids, sc, how) in systems.items():
        m = metrics_for(qids, rel, ids, sc)
        run_file = _write_run(main_dir, dataset, slugs[name], "full",
                              beir.ranking(qstr, ids, sc, str, keep=(lambda x: x > 0) if how == "bm25" else None))
        rows.append({"system": name, "search": how, **m, "run_file": str(run_file)})
        curves[name] = (KS, recall_curve(ids, rel, KS))
    # the index against exact search, for the model s09 uses
    ex_i, _ = ev.dense_exact(ckpt_name, qids, 10)
    index_recall = float(np.mean([len(set(a[:10]) & set(b[:10])) / 10 for a, b in zip(d_i, ex_i)])) if dense_how != "exact" else None

    result = {"split": split, "questions": "the half of validation hybrid was not tuned on" if halves else
              ("a fixed sample" if args.max_queries and len(qids) >= args.max_queries else "all labelled"),
              "queries": int(len(qids)), "pool": int(len(corpus.ptok)), "full_pool": rows,
              "hybrid_weights": weights, "validation_mrr@10": val_modes, "checkpoint": ckpt_name,
              "index_recall_at_10": index_recall, "index_backend": dense_how, "data_dir": str(eval_dir), "seconds": None}

    # ---- rerank-own-candidates setting, where queries have several candidates
    rq, rt, rr, rc = ev.split(split, rerank=True, part="report" if halves else None, max_queries=args.max_queries)
    if len(rq):
        rer = []
        for label, kind, ck in [("BM25", "bm25", None), ("GloVe average (untrained)", "glove", None)] + \
                [(n.split("_")[0] + " two-tower", "dense", n) for n in ("s04_model.pt", "s07_model.pt")
                 if ev.model(n) is not None]:
            ids, sc = ev.rerank_scores(kind, rt, rq, rc, ck)
            slug = kind if ck is None else "dense-" + ck.split("_")[0]
            f = _write_run(main_dir, dataset, slug, "rerank-candidates", beir.ranking([str(q) for q in rq], ids, sc, str))
            rer.append({"system": label, **metrics_for(rq, rr, ids, sc), "run_file": str(f)})
        ids, sc = ev.rerank_scores("hybrid", rt, rq, rc, ckpt_name, weights=(w_dense, w_sem))
        f = _write_run(main_dir, dataset, "hybrid-" + _stem(ckpt_name), "rerank-candidates",
                       beir.ranking([str(q) for q in rq], ids, sc, str))
        rer.append({"system": "hybrid", **metrics_for(rq, rr, ids, sc), "run_file": str(f)})
        result["rerank"] = rer
        result["rerank_queries"] = int(len(rq))

    result["seconds"] = round(t.s, 1)
    run = tracking.init(args.wandb, args.wandb_project, main_dir, "s10_evaluate", vars(args))
    name = args.name or f"eval_{split}"
    paths = write_reports(eval_dir / "reports", name, result, curves, run)
    run.finish()
    ev.clear_kept()
    from common.evaluation import markdown
    print(markdown(result))
    cli.done(f"{paths['json']}, {paths['md']} and {paths['png']}, run files in {main_dir / 'reports' / 'runs'}", t)


if __name__ == "__main__":
    run_main(main)
