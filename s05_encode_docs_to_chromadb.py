"""Stage 5: encode every unique passage (all splits) with the s04 model and index it.

The index is `passages-<model fingerprint>-<settings hash>`: an HNSW graph over each passage's
vector (a shorter one with --lex-dim models: --index-dim, common/index/vectors.py), whose top
--depth the full vectors (data/indexes/<name>.vectors.npy) rescore at query time. The graph lives in
    --backend faiss   data/indexes/<name>.faiss (the default: common/index/faiss_graph.py says why), or
    --backend chroma  a ChromaDB collection in data/chroma (data/chroma-shard-i when sharded, or a
                      Chroma server with --chroma-host), cosine space, ids = passage ids.
Killed part-way, a re-run resumes. When complete it becomes the index s09 queries
(data/active_index.json).

    python s05_encode_docs_to_chromadb.py
    # -> done: index passages-... (18,531 passages), now active (data/active_index.json)
"""
from pathlib import Path

from common import cli
from common.artifacts import run_main
from common.index import build, state


def main(argv=None, on_saved=None):
    """on_saved(done): called after each safely recorded batch (tests kill the build there)."""
    p = cli.parser(__doc__)
    p.add_argument("--checkpoint", default="s04_model.pt", help="checkpoint under --data-dir")
    p.add_argument("--no-activate", action="store_true", help="build, but leave s09 on its current index")
    build.add_args(p)
    cli.add_device(p)
    args = p.parse_args(argv)
    t = cli.Timer()
    device = cli.setup_torch(args)
    if args.encode_part:
        st = build.encode_part(args.data_dir, args.data_dir / args.checkpoint, device, args.encode_part,
                               args.encode_batch, on_saved=on_saved)
        i, n = st["part"]
        cli.done(f"encoded part {i}/{n}: passages {st['rows'][0]:,} to {st['rows'][1]:,} ({st['precision']['compute']}); "
                 f"once all {n} parts are done, run {Path(__file__).name} without --encode-part", t)
        return
    st, _ = build.build_and_activate(args.data_dir, args.data_dir / args.checkpoint, device,
                                     build.options_from_args(args), activate=not args.no_activate,
                                     on_saved=on_saved, script="s05_encode_docs_to_chromadb.py")
    print(f"{st['total']:,} passages in {t.s:.1f} s ({st['total'] / max(t.s, 1e-9):,.0f} passages/s)")
    cli.done(f"index {st['name']} ({st['total']:,} passages)"
             + ("" if args.no_activate else f", now active ({Path(args.data_dir) / state.ACTIVE})"), t)


if __name__ == "__main__":
    run_main(main)
