"""Stage 8: re-encode every passage with the best model (data/best_model.pt, from s07) into a new
index (same backends and options as s05). s09 keeps answering from the current index until the
new one is complete and counted; only then does data/active_index.json switch over.

    python s08_reencode_all.py
    # -> done: index passages-... (18,531 passages), now active (data/active_index.json)
"""
from pathlib import Path

from common import cli
from common.artifacts import require, run_main
from common.index import build, state, store


def main(argv=None, on_saved=None):
    """on_saved(done): called after each safely recorded batch (tests kill the build there)."""
    p = cli.parser(__doc__)
    p.add_argument("--checkpoint", default="best_model.pt", help="checkpoint under --data-dir")
    p.add_argument("--drop-old", action="store_true", help="delete the previously active index afterwards")
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
    bm = require(args.data_dir / args.checkpoint)
    st, old = build.build_and_activate(args.data_dir, args.data_dir / args.checkpoint, device,
                                       build.options_from_args(args), extra={"winner": bm["settings"].get("winner")},
                                       on_saved=on_saved, script="s08_reencode_all.py")
    if old and old["name"] != st["name"]:
        if args.drop_old:
            store.drop(args.data_dir, old["name"], host=old.get("chroma_host"), port=old.get("chroma_port", 8000))
            print(f"deleted the previous index {old['name']}")
        else:
            print(f"previous index {old['name']} kept (s10 compares it); --drop-old deletes it")
    print(f"{st['total']:,} passages in {t.s:.1f} s ({st['total'] / max(t.s, 1e-9):,.0f} passages/s)")
    cli.done(f"index {st['name']} ({st['total']:,} passages), now active ({Path(args.data_dir) / state.ACTIVE})", t)


if __name__ == "__main__":
    run_main(main)
