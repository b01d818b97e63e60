"""Stage 6: mine hard negatives for the training queries with the s04 model and its index.

For each training query: its top `--depth` passages from the s04 index; negatives are drawn
from ranks `--skip`..`--depth` (below the very top, where false negatives crowd), never a passage
selected for the query, never one of its own candidates, and never one scoring within `--margin`
of its positive. Writes data/hard_negatives.parquet in the triplet layout. The searches are kept
batch by batch (data/hard_negatives.parquet.chunks/): killed part-way, a re-run resumes at the last
finished batch. `--miner bm25` ranks with the pool's BM25 instead (the same window and guards, the
guard scored by the model), `--miner both` takes one negative from each ranking.

    python s06_mine_hard_negatives.py
    python s06_mine_hard_negatives.py --miner both
"""
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from common import bm25, cli
from common.artifacts import MissingInput, StageError, atomic_path, run_main, write_manifest
from common.chunks import Chunks, ragged, unragged
from common.corpus import load_corpus, read_query_columns
from common.encode import encode_rows, load_model
from common.index import chroma_graph, store
from common.mining import mine
from common.stages import script
from common.triplets import TRIPLET_SCHEMA


def main(argv=None, on_saved=None):
    """on_saved(batch): called after each search batch is kept (tests kill the stage there)."""
    p = cli.parser(__doc__)
    p.add_argument("--checkpoint", default="s04_model.pt")
    p.add_argument("--skip", type=cli.nonneg_int, default=3, help="ranks at the very top that are never used")
    p.add_argument("--depth", type=cli.positive_int, default=30, help="deepest rank a negative may come from")
    p.add_argument("--per-query", type=cli.positive_int, default=1, help="hard negatives per (query, positive)")
    p.add_argument("--margin", type=float, default=0.0,
                   help="drop candidates scoring above (positive's score - margin)")
    p.add_argument("--miner", default="model", choices=["model", "bm25", "both"],
                   help="what ranks the pool: the s04 model through its index, BM25, or both (a negative from each)")
    p.add_argument("--query-batch", type=cli.positive_int, default=500)
    p.add_argument("--seed", type=cli.nonneg_int, default=0)
    chroma_graph.add_args(p)
    cli.add_device(p)
    args = p.parse_args(argv)
    if args.skip >= args.depth:
        p.error(f"argument --skip: must be below --depth ({args.skip} >= {args.depth})")
    t = cli.Timer()
    device = cli.setup_torch(args)
    d = args.data_dir
    corpus = load_corpus(d)
    model, ckpt = load_model(d / args.checkpoint, corpus.vocab.fingerprint, device)
    index = store.find_built(d, ckpt["fingerprint"], args.chroma_host, args.chroma_port)
    if index is None:
        raise MissingInput(d / "indexes", script("s05"),
                           message=f"no complete index for {args.checkpoint}: "
                                   f"run {script('s05')} --checkpoint {args.checkpoint} first")

    # training queries with a positive, with their candidate lists
    train = corpus.labelled("train")
    qids, pos, cand = train.qids, train.relevant, train.candidates
    qrows = corpus.qidx.rows(qids)
    first_pos = corpus.pidx.rows(np.array([min(x) for x in pos], dtype=np.int64))  # for the false-negative guard
    miners = ["model", "bm25"] if args.miner == "both" else [args.miner]
    lex = texts = None
    if "bm25" in miners:  # the index s05 built beside the graph (built here if it is missing)
        lex = bm25.load_or_build(d, **bm25.stage_params(d))
        q = read_query_columns(d / "queries.parquet", ["query_id", "query"])
        text_of = dict(zip(q["query_id"].tolist(), q["query"]))
        texts = [text_of[int(x)] for x in qids]
    out = d / "hard_negatives.parquet"
    chunks = Chunks(out.with_name(out.name + ".chunks"),
                    {"model": ckpt["fingerprint"], "index": index.name, "vocab": corpus.vocab.fingerprint,
                     "depth": args.depth, "query_batch": args.query_batch, "queries": len(qids),
                     "layout": 2, **({"miner": args.miner, "bm25": bm25.label(lex.params)} if lex else {})})
    starts = range(0, len(qids), args.query_batch)
    batch = lambda n: slice(starts[n], starts[n] + args.query_batch)

    def search(n):
        qv = encode_rows(model, corpus.qtok, qrows[batch(n)], "query", device)
        pv = encode_rows(model, corpus.ptok, first_pos[batch(n)], "passage", device)
        got = {"pos_scores": (qv * pv).sum(1)}
        for m in miners:
            if m == "model":
                ids, sc = index.search_ids(qv, args.depth)
            else:  # BM25's order; the model's scores, for the false-negative guard against the positive
                rows, _ = lex.search_rows(texts[batch(n)], args.depth)
                ids = [lex.ids[r] for r in rows]
                flat = np.concatenate(ids) if ids else np.zeros(0, np.int64)
                cv = encode_rows(model, corpus.ptok, corpus.pidx.rows(flat), "passage", device)
                owner = np.repeat(np.arange(len(ids)), [len(i) for i in ids])
                sc = unragged((cv * qv[owner]).sum(1).astype(np.float32), np.array([len(i) for i in ids]))
            tag = "" if m == "model" else "bm25_"
            got |= {f"{tag}ids_{k}": v for k, v in ragged(ids, np.int64).items()}
            got |= {f"{tag}sc_{k}": v for k, v in ragged(sc, np.float32).items()}
        return got
    # mined batch by batch as the searches come, so that only one batch's rankings are ever held
    # (README, v2.1 scale); one random stream over all batches, as one pass would draw
    rng = np.random.default_rng(args.seed)
    tables, stats = [], {}
    for n, got in enumerate(chunks.each(len(starts), search, "s06 search batches", on_saved=on_saved)):
        b = batch(n)
        for m in miners:
            tag = "" if m == "model" else "bm25_"
            ids = [r.tolist() for r in unragged(got[f"{tag}ids_flat"], got[f"{tag}ids_lengths"])]
            sc = [r.tolist() for r in unragged(got[f"{tag}sc_flat"], got[f"{tag}sc_lengths"])]
            part, st = mine(qids[b], pos[b], [set(c) for c in cand[b]], ids, sc, got["pos_scores"], args.skip,
                            args.depth, args.per_query, args.margin, rng)
            tables.append(part)
            stats[m] = {k: stats.get(m, {}).get(k, 0) + v for k, v in st.items()}
    table = pa.concat_tables(tables) if tables else TRIPLET_SCHEMA.empty_table()
    if table.num_rows == 0:
        raise StageError("no hard negatives found: lower --skip or --margin, or raise --depth")
    with atomic_path(out) as tmp:
        pq.write_table(table, tmp)
    write_manifest(out, "s06_mine_hard_negatives.py", {k: str(v) for k, v in vars(args).items()},
                   inputs={"vocab": corpus.vocab_manifest, "model": ckpt["fingerprint"]},
                   stats=stats["model"] if miners == ["model"] else stats)
    for m, st in stats.items():
        print(f"{m}: {st['queries']:,} queries got negatives; {st['dropped_as_possible_false_negative']:,} "
              f"candidates dropped as possible false negatives; {st['no_negative_found']:,} queries without one")
    chunks.clear()
    cli.done(f"{out} ({table.num_rows:,} triplets)", t)


if __name__ == "__main__":
    run_main(main)
