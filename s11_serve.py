"""Stage 11: search from a browser and over HTTP (a web page and a JSON API over the active index).

    python s11_serve.py
    # -> serving http://127.0.0.1:8080 (index passages-..., 18,531 passages, default mode hybrid, 1 worker, ready in 1.5 s); Ctrl-C stops it
    python s11_serve.py --port 9000 --workers 4 --host 0.0.0.0

Pages: / (search; /?q=...&mode=...&k=...), /report (the latest s10 reports); API: /api/search?q=...,
/api/health, /openapi.json (common/serve.py). Each worker loads the index and BM25 before the line
above is printed, and follows s08's switch of data/active_index.json without a restart.
"""
import os
import socket
import tempfile
import threading
import time

from common import cli
from common.artifacts import StageError, run_main
from common.index import chroma_graph
from common.serve import DEFAULT_PORT, HTTP_PROTOCOL, LiveSearcher, create_app, refuse_workers

# with the h11 parser: a URL of up to 256 KB reaches the app, which refuses a long query in one line of
# JSON (h11's default, 16 KB, would refuse it before the app sees it)
MAX_REQUEST_BYTES = 256 * 1024


def announce(url: str, ready, what: str, timer):
    """Print the serving line once ready() holds (the socket is listening / every worker loaded)."""
    def wait():
        while not ready():
            time.sleep(0.05)
        print(f"serving {url} ({what}, ready in {timer.s:.1f} s); Ctrl-C stops it", flush=True)
    threading.Thread(target=wait, daemon=True).start()


def check_port(host: str, port: int):
    """Before loading anything: a port in use (or an address we cannot bind) is one line now."""
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, port))
    except OSError as e:
        raise StageError(f"cannot listen on {host}:{port} ({e.strerror}): choose another --port or --host")


def main():
    p = cli.parser(__doc__)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0: every interface)")
    p.add_argument("--port", type=cli.int_range(1, 65535), default=DEFAULT_PORT, help="not 8000: a Chroma server's default")
    p.add_argument("--workers", type=cli.int_range(1, 64), default=1,
                   help="processes, each with its own searcher over the same memory-mapped files (needs the faiss "
                        "index or a Chroma server)")
    p.add_argument("--access-log", action="store_true", help="log every request")
    chroma_graph.add_args(p)
    args = p.parse_args()
    import uvicorn
    refuse_workers(args.data_dir, args.workers, args.chroma_host)
    check_port(args.host, args.port)
    t = cli.Timer()
    # loaded here even with --workers: a damaged or missing index is one line now, not workers
    # failing (and being restarted) one after the other
    live = LiveSearcher(args.data_dir, args.chroma_host, args.chroma_port)
    a = live.searcher.active
    what = (f"index {a['name']}, {a['total']:,} passages, default mode {live.searcher.mode}, "
            f"{args.workers} worker{'s' if args.workers > 1 else ''}")
    url = f"http://{args.host}:{args.port}"
    common = dict(host=args.host, port=args.port, log_level="warning", access_log=args.access_log,
                  h11_max_incomplete_event_size=MAX_REQUEST_BYTES, http=HTTP_PROTOCOL)
    if args.workers == 1:
        server = uvicorn.Server(uvicorn.Config(create_app(live=live), **common))
        announce(url, lambda: server.started, what, t)
        server.run()
        return
    del live, a  # each worker loads its own (below); the files' pages are shared through the page cache
    ready_dir = tempfile.mkdtemp(prefix="s11-ready-")
    os.environ.update(MSMARCO_SERVE_DATA_DIR=str(args.data_dir), MSMARCO_SERVE_READY_DIR=ready_dir,
                      MSMARCO_SERVE_CHROMA_HOST=args.chroma_host or "", MSMARCO_SERVE_CHROMA_PORT=str(args.chroma_port))
    announce(url, lambda: len(os.listdir(ready_dir)) >= args.workers, what, t)
    try:
        uvicorn.run("common.serve:create_app", factory=True, workers=args.workers, **common)
    finally:
        for f in os.listdir(ready_dir):
            os.unlink(os.path.join(ready_dir, f))
        os.rmdir(ready_dir)


if __name__ == "__main__":
    run_main(main)
