"""Stage 9: ask questions. Interactive prompt over the active index (data/active_index.json).

    python s09_query_retrieve.py                      # prompt; `exit`, Ctrl-D or Ctrl-C to leave
    python s09_query_retrieve.py --query "what is a corporation" -k 5
"""
import sys
import textwrap
import time

from common import cli
from common.index import chroma_graph
from common.artifacts import StageError, run_main
from common.search import MAX_K, MODES, QueryError, Searcher


def show(hits, width: int, elapsed_ms: float):
    for h in hits:
        text = textwrap.shorten(h.text, width=width, placeholder=" ...")
        print(f"{h.rank:3d}. {h.score:.3f}  [{h.doc_id if h.doc_id is not None else h.passage_id}]  {text}")
    print(f"({len(hits)} results in {elapsed_ms:.1f} ms)")


def answer(s: Searcher, q: str, k: int, width: int) -> bool:
    t0 = time.perf_counter()
    try:
        hits = s.search(q, k)
    except QueryError as e:
        print(e)
        return False
    except StageError:  # a damaged file (index, BM25, reports): one line, and the stage ends
        raise
    except Exception as e:  # e.g. the Chroma server went away mid-session: say so, keep the prompt
        print(f"search failed ({type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}); "
              f"check the index (re-run s08_reencode_all.py) or the Chroma server")
        return False
    show(hits, width, (time.perf_counter() - t0) * 1000)
    return True


def main():
    p = cli.parser(__doc__)
    p.add_argument("--query", default=None, help="answer this one query and exit")
    p.add_argument("-k", type=cli.int_range(1, MAX_K), default=10, help=f"results to show (1 to {MAX_K:,})")
    p.add_argument("--width", type=cli.int_range(10), default=200, help="characters of passage text to show")
    p.add_argument("--mode", default=None, choices=MODES,
                   help="default: whichever won on validation in s10 (data/reports/hybrid.json); hybrid if s10 has not run")
    p.add_argument("--device", default="cpu",
                   help="cpu is fastest for one query at a time (and needs no torch: the avg query tower runs in numpy)")
    chroma_graph.add_args(p)
    args = p.parse_args()
    t = cli.Timer()
    s = Searcher(args.data_dir, args.device, args.chroma_host, args.chroma_port, mode=args.mode,
                 warm_up=True if args.query is not None else "background")
    if args.query is not None:
        ok = answer(s, args.query, args.k, args.width)
        sys.exit(0 if ok else 1)
    print(f"index {s.active['name']} ({s.active['total']:,} passages, model {s.active['checkpoint']}); "
          f"mode {s.mode}" + (f" (weights {s.weights})" if s.mode == "hybrid" else "") + f"; ready in {t.s:.1f} s. Type a question; `exit` or Ctrl-D to leave.")
    try:
        while True:
            try:
                q = input("query> ")
            except (EOFError, KeyboardInterrupt):
                print()
                break
            if q.strip().lower() in ("exit", "quit", ":q"):
                break
            if not q.strip():
                continue
            answer(s, q, args.k, args.width)
    finally:
        s.close()
    print("bye")


if __name__ == "__main__":
    run_main(main)
