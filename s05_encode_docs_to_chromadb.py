"""Stage 5: encode every unique passage (all splits) with the s04 model and index it.

The index is `passages-<model fingerprint>-<settings hash>`: an HNSW graph over a short version of
each vector (--index-dim, common/dense_index.py), whose top --depth the full vectors
(data/indexes/<name>.vectors.npy) rescore at query time. The graph lives in
    --backend faiss   data/indexes/<name>.faiss (the default: common/faiss_index.py says why), or
    --backend chroma  a ChromaDB collection in data/chroma (data/chroma-shard-i when sharded, or a
                      Chroma server with --chroma-host), cosine space, ids = passage ids.
Killed part-way, a re-run resumes. When complete it becomes the index s09 queries
(data/active_index.json).

    python s05_encode_docs_to_chromadb.py
    # -> wrote collection passages-... (18,531 passages), now active
    # MS MARCO v1.1 scale (1M passages, 2 cores): 264.5 s, 3,781 passages/s (bench/README.md)
"""
from pathlib import Path

from common import cli, vector_store
from common.artifacts import run_main
from common.indexing import index_checkpoint


def main():
    p = cli.parser(__doc__)
    p.add_argument("--checkpoint", default="s04_model.pt", help="checkpoint under --data-dir")
    p.add_argument("--store-text", action="store_true",
                   help="also store passage text as Chroma documents (slower: Chroma full-text indexes it); "
                        "by default results read text from data/passage_text/")
    p.add_argument("--encode-batch", type=cli.positive_int, default=4096)
    p.add_argument("--write-batch", type=cli.positive_int, default=5000, help="capped at the client's max batch size")
    p.add_argument("--no-activate", action="store_true", help="build, but leave s09 on its current collection")
    vector_store.add_args(p)
    vector_store.add_index_args(p)
    cli.add_device(p)
    args = p.parse_args()
    t = cli.Timer()
    device = cli.setup_torch(args)
    backend = vector_store.backend_from_args(args)
    c = vector_store.writer_client(args, backend)
    state = index_checkpoint(args.data_dir, args.data_dir / args.checkpoint, c, device,
                             encode_batch=args.encode_batch, write_batch=args.write_batch,
                             store_text=args.store_text, shards=args.shards, host=args.chroma_host,
                             hnsw=vector_store.hnsw_from_args(args), index_dim=args.index_dim, depth=args.depth,
                             backend=backend, save_every=args.save_every)
    extra = {"chroma_host": args.chroma_host, "chroma_port": args.chroma_port}
    if not args.no_activate:
        vector_store.activate(args.data_dir, state, extra)
    print(f"{state['total']:,} passages in {t.s:.1f} s ({state['total'] / max(t.s, 1e-9):,.0f} passages/s)")
    cli.done(f"collection {state['name']} ({state['total']:,} passages)"
             + ("" if args.no_activate else f", now active ({Path(args.data_dir) / vector_store.ACTIVE})"), t)


if __name__ == "__main__":
    run_main(main)
