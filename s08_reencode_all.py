"""Stage 8: re-encode every passage with the best model (data/best_model.pt, from s07) into a new
index (same backends and options as s05). s09 keeps answering from the current index until the
new one is complete and counted; only then does data/active_index.json switch over.

    python s08_reencode_all.py
"""
from pathlib import Path

from common import cli, vector_store
from common.artifacts import require, run_main
from common.indexing import index_checkpoint


def main():
    p = cli.parser(__doc__)
    p.add_argument("--checkpoint", default="best_model.pt", help="checkpoint under --data-dir")
    p.add_argument("--store-text", action="store_true",
                   help="also store passage text as Chroma documents (slower: Chroma full-text indexes it); "
                        "by default results read text from data/passage_text/")
    p.add_argument("--encode-batch", type=cli.positive_int, default=4096)
    p.add_argument("--write-batch", type=cli.positive_int, default=5000)
    p.add_argument("--drop-old", action="store_true", help="delete the previously active collection afterwards")
    vector_store.add_args(p)
    vector_store.add_index_args(p)
    cli.add_device(p)
    args = p.parse_args()
    t = cli.Timer()
    device = cli.setup_torch(args)
    bm = require(args.data_dir / args.checkpoint)
    backend = vector_store.backend_from_args(args)
    c = vector_store.writer_client(args, backend)
    old = None
    try:
        old = vector_store.active(args.data_dir)
    except Exception:
        pass
    state = index_checkpoint(args.data_dir, args.data_dir / args.checkpoint, c, device,
                             encode_batch=args.encode_batch, write_batch=args.write_batch,
                             store_text=args.store_text, shards=args.shards, host=args.chroma_host,
                             hnsw=vector_store.hnsw_from_args(args), index_dim=args.index_dim, depth=args.depth,
                             backend=backend, save_every=args.save_every)
    vector_store.activate(args.data_dir, state, {"chroma_host": args.chroma_host, "chroma_port": args.chroma_port,
                                                 "winner": bm["settings"].get("winner")})
    if old and old["name"] != state["name"]:
        if args.drop_old:
            oc = c if c is not None or old.get("backend") == "faiss" else \
                vector_store.client(args.data_dir, old.get("chroma_host"), old.get("chroma_port", 8000), writer=True)
            vector_store.drop_built(args.data_dir, old["name"], oc)
            print(f"deleted the previous collection {old['name']}")
        else:
            print(f"previous collection {old['name']} kept (s10 compares it); --drop-old deletes it")
    print(f"{state['total']:,} passages in {t.s:.1f} s ({state['total'] / max(t.s, 1e-9):,.0f} passages/s)")
    cli.done(f"collection {state['name']} ({state['total']:,} passages), now active "
             f"({Path(args.data_dir) / vector_store.ACTIVE})", t)


if __name__ == "__main__":
    run_main(main)
