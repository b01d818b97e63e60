"""Stage 0: load MS MARCO and combine its splits.

Reads `microsoft/ms_marco` from the Hugging Face Hub (`--config v1.1`, or `v2.1`), or a local copy
in the same layout (`--source DIR` with DIR/v1.1/{train,validation,test}-*.parquet), and writes

    data/queries.parquet   one row per query: split, query_id, query, query_type, answers,
                           passage_ids (its candidate passages), is_selected
    data/passages.parquet  one row per unique passage: passage_id (from its text), text

    python s00_combine_data.py --source ../shared/msmarco-sample
    # -> wrote data/queries.parquet (8,178 queries) and data/passages.parquet (18,533 passages)
"""
from common import cli
from common.artifacts import run_main
from common import msmarco


def main():
    p = cli.parser(__doc__)
    p.add_argument("--config", default="v1.1", choices=["v1.1", "v2.1"])
    p.add_argument("--source", default=None,
                   help="local folder laid out as the hub repo; default: download from the Hub")
    p.add_argument("--hub-repo", default=msmarco.HUB_REPO, help="Hub dataset id (or a local clone of it)")
    p.add_argument("--batch-rows", type=cli.positive_int, default=10_000)
    args = p.parse_args()

    from tqdm import tqdm
    t = cli.Timer()
    if args.source:
        msmarco.check_source(args.source, args.config)
        reader, origin = msmarco.iter_local, args.source
    else:
        reader, origin = msmarco.iter_hub, args.hub_repo
    total = msmarco.source_rows_estimate(args.source, args.config)
    with tqdm(total=total, desc="s00 rows", unit="row", mininterval=1) as bar:
        report, _, _ = msmarco.combine_into(args.data_dir, origin, args.config, "s00_combine_data.py", reader,
                                            args.batch_rows, progress=bar)
    c = report["counts"]
    problems = {k: v for k, v in c.items() if k not in ("rows_read", "queries", "passages")}
    print(f"rows read {c['rows_read']:,}; queries per split {report['queries_per_split']}")
    print("repaired or skipped: " + (", ".join(f"{k} {v:,}" for k, v in sorted(problems.items())) or "nothing"))
    qpath, ppath = args.data_dir / "queries.parquet", args.data_dir / "passages.parquet"
    cli.done(f"{qpath} ({c['queries']:,} queries) and {ppath} ({c['passages']:,} passages)", t)


if __name__ == "__main__":
    run_main(main)
