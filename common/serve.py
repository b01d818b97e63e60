"""s11's web page and JSON API over the active index: a FastAPI app around common.search.Searcher.

    /                 search page (GET form: /?q=...&mode=...&k=..., so a search can be bookmarked)
    /report           the latest s10 reports (tables, Recall@k plots)
    /api/search       JSON {query, mode, k, took_ms, hits: [{rank, score, passage_id, text}]}
    /api/health       the index's name, passage count, model, default mode
    /openapi.json     the API's schema (no interactive docs page: the usual one loads its assets from a CDN)

One query path: every request calls Searcher.search, the same code as s09, on one Searcher per
worker, loaded (BM25 included) before the worker takes requests. When s08 switches
data/active_index.json, the next request notices (one stat()), a thread loads the new index, and
requests keep using the old Searcher until the new one is ready: no restart, no failed request.
Everything served is read-only: only GET routes, and no handler writes a file.
"""
from __future__ import annotations

import html
import os
import re
import threading
import time
from pathlib import Path
from urllib.parse import quote, unquote_to_bytes

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, ORJSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from .artifacts import StageError
from .index.state import ACTIVE
from .search import MAX_K, MAX_QUERY_CHARS, MODES, QueryError, Searcher

DEFAULT_PORT = 8080  # not 8000: a Chroma server's default


def one_line(e: BaseException, limit: int = 300) -> str:
    s = str(e).strip().splitlines()
    return (s[0] if s else type(e).__name__)[:limit]


# ------------------------------------------------------------------ the live searcher
class LiveSearcher:
    """The Searcher of the active index, replaced (atomically, after the new one is loaded) when the
    pointer file changes; one per worker process."""

    def __init__(self, data_dir: Path, chroma_host: str | None = None, chroma_port: int = 8000, log=print):
        self.data_dir, self.chroma_host, self.chroma_port, self.log = Path(data_dir), chroma_host, chroma_port, log
        self.pointer = self.data_dir / ACTIVE
        self.reload_error: str | None = None
        self._lock = threading.Lock()
        self._loading = False
        from .index import store
        store.active(self.data_dir)  # no index yet: one line naming the script to run
        self._sig = self._signature()  # before loading: a switch during the load is still noticed
        self.searcher = self._load()

    def _signature(self):
        st = os.stat(self.pointer)  # the pointer is replaced by rename: a new inode and mtime
        return st.st_ino, st.st_mtime_ns, st.st_size

    def _load(self) -> Searcher:
        s = Searcher(self.data_dir, "cpu", self.chroma_host, self.chroma_port, warm_up=True, mode=None)
        s.prepare_all_modes()
        # the first request as fast as the others: the mapped files read ahead into the page cache
        # (shared by every worker: only the first pays), and one query through each mode
        name, d = s.active["name"], self.data_dir
        _read_ahead(f for f in [*sorted((d / "indexes").glob(f"{name}.*")), *sorted((d / "bm25").glob("*")),
                                *sorted((d / "passage_text").glob("*"))] if f.is_file())
        for mode in MODES:
            try:
                s.search("what is the warm up", 10, mode)
            except QueryError:
                pass
        return s

    def get(self) -> Searcher:
        """The searcher to answer this request with; starts loading the new index if s08 switched."""
        try:
            sig = self._signature()
        except OSError:
            return self.searcher  # mid-switch or removed: keep answering from the loaded index
        if sig != self._sig and not self._loading:
            with self._lock:
                if sig != self._sig and not self._loading:
                    self._loading = True
                    threading.Thread(target=self._reload, args=(sig,), daemon=True).start()
        return self.searcher

    def _reload(self, sig):
        try:
            new = self._load()
            # one assignment: a request sees the old searcher or the new one, never half of either.
            # The old one is not closed: requests in flight still use it (garbage collected after).
            self.searcher, self.reload_error = new, None
            self.log(f"switched to index {new.active['name']}")
        except Exception as e:  # the old index keeps serving; /api/health says why the new one did not load
            self.reload_error = one_line(e)
            self.log(f"kept index {self.searcher.active['name']}: the new active index did not load ({self.reload_error})")
        finally:
            self._sig = sig  # a failed load is retried when the pointer changes again
            self._loading = False


def _read_ahead(paths, chunk: int = 8 << 20):
    """Read files through once, so that their pages are in the page cache before the first request
    faults them in through a mapping (at 1M passages from a cold disk: seconds per query otherwise).
    Another worker, or a warm machine, finds them cached: a memory copy."""
    buf = memoryview(bytearray(chunk))
    for path in paths:
        try:
            with open(path, "rb", buffering=0) as f:
                while f.readinto(buf):
                    pass
        except OSError:
            pass  # a missing or unreadable file is reported by the search that needs it


# ------------------------------------------------------------------ input checks
class BadInput(ValueError):
    def __init__(self, msg: str, status: int = 400):
        super().__init__(msg)
        self.status = status


_BAD_PERCENT = re.compile(rb"%(?![0-9A-Fa-f]{2})")


def check_query_string(raw: bytes) -> None:
    """Refuse what the framework would silently repair: a '%' not followed by two hex digits, and
    bytes that are not UTF-8 once decoded (it replaces them with U+FFFD)."""
    if _BAD_PERCENT.search(raw):
        raise BadInput("invalid percent-encoding in the query string")
    for part in raw.split(b"&"):
        try:
            unquote_to_bytes(part.replace(b"+", b" ")).decode("utf-8")
        except UnicodeDecodeError:
            raise BadInput("the query string is not valid UTF-8") from None


def parse_params(q, mode, k, default_mode: str, page: bool = False) -> tuple[str, str, int]:
    """(query, mode, k) from the request's strings; BadInput with one line for the user."""
    if q is None or not q.strip():
        raise BadInput("empty query: pass q=<your question>" if not page else "type a question")
    if len(q) > MAX_QUERY_CHARS:
        raise BadInput(f"query too long ({len(q):,} characters; at most {MAX_QUERY_CHARS:,})", 414)
    mode = mode or default_mode
    if mode not in MODES:
        raise BadInput(f"unknown mode {mode[:40]!r}: use one of {', '.join(MODES)}")
    if k is None or k == "":
        k = 10
    else:
        if not re.fullmatch(r"\s*\d{1,7}\s*", k):
            raise BadInput(f"k must be a whole number from 1 to {MAX_K:,}")
        k = int(k)
        if not 1 <= k <= MAX_K:
            raise BadInput(f"k must be a whole number from 1 to {MAX_K:,} (got {k:,})")
    return q, mode, k


# ------------------------------------------------------------------ highlighting
_WORD = re.compile(r"\w+", re.UNICODE)


class Highlighter:
    """Marks the passage words that share a stem with a query word (BM25's stemmer and stopwords)."""

    def __init__(self):
        from . import bm25
        self.stemmer = bm25._stemmer(bm25.STEMMER)
        try:
            from bm25s.stopwords import STOPWORDS_EN
            self.stop = set(STOPWORDS_EN)
        except ImportError:
            self.stop = set()

    def _stem(self, w: str) -> str:
        w = w.lower()
        return self.stemmer.stemWord(w) if self.stemmer else w

    def stems(self, query: str) -> set[str]:
        return {self._stem(w) for w in _WORD.findall(query) if w.lower() not in self.stop}

    def mark(self, text: str, stems: set[str]) -> str:
        """HTML of text (escaped), with <mark> around the matching words."""
        out, last = [], 0
        for m in _WORD.finditer(text):
            if self._stem(m.group()) in stems:
                out.append(html.escape(text[last:m.start()]))
                out.append(f"<mark>{html.escape(m.group())}</mark>")
                last = m.end()
        out.append(html.escape(text[last:]))
        return "".join(out)


# ------------------------------------------------------------------ the page
CSS = """
body{font:16px/1.45 system-ui,sans-serif;max-width:56rem;margin:1.5rem auto;padding:0 1rem;color:#222}
header{display:flex;gap:1rem;align-items:baseline}header h1{font-size:1.3rem;margin:0}
form{display:flex;gap:.5rem;flex-wrap:wrap;margin:1rem 0}
input[name=q]{flex:1 1 24rem;font-size:1.05rem;padding:.45rem}select,input,button{font-size:1rem;padding:.4rem}
input[name=k]{width:5rem}.meta{color:#666;font-size:.9rem}.error{color:#a00;font-weight:600}
ol{padding-left:0;list-style:none}li.hit{margin:0 0 .9rem;padding:.5rem .7rem;border-left:3px solid #ccd}
.hit .head{font-size:.85rem;color:#555}.hit .rank{font-weight:700;color:#224}mark{background:#fe6;padding:0 .1em}
table{border-collapse:collapse;margin:.5rem 0 1.5rem;font-size:.9rem}td,th{border:1px solid #ccc;padding:.2rem .5rem}
td:not(:first-child){text-align:right}img{max-width:100%}
"""


def _layout(title: str, body: str) -> str:
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><meta name=viewport content='width=device-width'>"
            f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>"
            f"<header><h1><a href='/'>msmarco-search</a></h1><a href='/report'>report</a>"
            f"<a href='/openapi.json'>API schema</a></header>{body}</body></html>")


def search_page(s: Searcher | None, q: str, mode: str, k: str, hits=None, took_ms=None, error=None,
                hl: Highlighter | None = None) -> str:
    opts = "".join(f"<option{' selected' if m == mode else ''}>{m}</option>" for m in MODES)
    form = (f"<form action='/' method=get role=search><input name=q value=\"{html.escape(q)}\" autofocus "
            f"placeholder='ask a question' aria-label=query><select name=mode aria-label=mode>{opts}</select>"
            f"<input name=k value=\"{html.escape(str(k))}\" inputmode=numeric aria-label=k><button>search</button></form>")
    body = [form]
    if s is not None:
        body.append(f"<p class=meta>{s.active['total']:,} passages, index {html.escape(s.active['name'])}</p>")
    if error:
        said = f"<q id=query>{html.escape(q)}</q>: " if q else ""
        body.append(f"<p class=error id=error>{said}{html.escape(error)}</p>")
    if hits is not None:
        stems = hl.stems(q) if hl else set()
        body.append(f"<p class=meta id=took>{len(hits)} results for <q id=query>{html.escape(q)}</q> ({mode}) in {took_ms:.1f} ms</p><ol id=hits>")
        for h in hits:
            pid = h.doc_id if h.doc_id is not None else h.passage_id
            text = hl.mark(h.text, stems) if hl else html.escape(h.text)
            body.append(f"<li class=hit><div class=head><span class=rank>{h.rank}.</span> score {h.score:.3f} "
                        f"&middot; passage <span class=pid>{html.escape(str(pid))}</span></div>"
                        f"<div class=text>{text}</div></li>")
        body.append("</ol>")
    return _layout(f"{q} - msmarco-search" if q else "msmarco-search", "".join(body))


# ------------------------------------------------------------------ the s10 report
def _md_to_html(md: str) -> str:
    """The subset of Markdown s10's reports use: headings, pipe tables, paragraphs (all escaped)."""
    out, table = [], []

    def flush():
        if table:
            rows = [r for r in table if not re.fullmatch(r"\|?[\s:|-]+\|?", r)]
            cells = [[html.escape(c.strip().replace("**", "")) for c in r.strip().strip("|").split("|")] for r in rows]
            out.append("<table>" + "".join(
                "<tr>" + "".join(f"<{'th' if i == 0 else 'td'}>{c}</{'th' if i == 0 else 'td'}>" for c in r) + "</tr>"
                for i, r in enumerate(cells)) + "</table>")
            table.clear()

    for line in md.splitlines():
        if line.lstrip().startswith("|"):
            table.append(line)
            continue
        flush()
        m = re.match(r"(#{1,4})\s+(.*)", line)
        if m:
            n = min(len(m.group(1)) + 1, 5)
            out.append(f"<h{n}>{html.escape(m.group(2))}</h{n}>")
        elif line.strip():
            out.append(f"<p>{html.escape(line)}</p>")
    flush()
    return "".join(out)


def report_files(data_dir: Path) -> list[Path]:
    d = Path(data_dir) / "reports"
    return sorted(d.glob("*.md"), key=lambda p: p.stat().st_mtime, reverse=True) if d.is_dir() else []


def report_page(data_dir: Path) -> str:
    files = report_files(data_dir)
    if not files:
        return _layout("report - msmarco-search", "<p class=error>no reports yet: run s10_evaluate.py</p>")
    body = []
    for md in files:
        body.append(f"<section><h2>{html.escape(md.stem)}</h2>"
                    f"<p class=meta>{time.strftime('%Y-%m-%d %H:%M', time.localtime(md.stat().st_mtime))}</p>")
        body.append(_md_to_html(md.read_text(errors="replace")))
        png = md.with_name(f"{md.stem}_recall.png")
        if png.exists():
            body.append(f"<img alt='Recall@k, {html.escape(md.stem)}' src='/report/{quote(png.name)}'>")
        body.append("</section>")
    return _layout("report - msmarco-search", "".join(body))


# ------------------------------------------------------------------ the app
class HitOut(BaseModel):
    rank: int
    score: float
    passage_id: int
    text: str
    doc_id: str | None = None


class SearchOut(BaseModel):
    query: str
    mode: str
    k: int
    took_ms: float
    hits: list[HitOut]


class HealthOut(BaseModel):
    index: str
    passages: int
    model: str
    stage: str | None
    backend: str
    default_mode: str
    modes: list[str]
    max_k: int
    reload_error: str | None


class ErrorOut(BaseModel):
    error: str


SEARCH_THREADS = 3  # requests searched at once per worker (the rest wait in the event loop)


def create_app(data_dir: Path | None = None, chroma_host: str | None = None, chroma_port: int | None = None,
               live: LiveSearcher | None = None):
    """The app, with its searcher loaded. Without arguments (each of --workers' processes), the settings
    come from MSMARCO_SERVE_* environment variables set by s11_serve.py."""
    if live is None:
        data_dir = Path(data_dir or os.environ.get("MSMARCO_SERVE_DATA_DIR", "data"))
        chroma_host = chroma_host or os.environ.get("MSMARCO_SERVE_CHROMA_HOST") or None
        chroma_port = int(chroma_port or os.environ.get("MSMARCO_SERVE_CHROMA_PORT") or 8000)
        live = LiveSearcher(data_dir, chroma_host, chroma_port)
    data_dir = live.data_dir
    hl = Highlighter()

    ready = os.environ.get("MSMARCO_SERVE_READY_DIR")

    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(app):
        # a search holds the GIL part of the time: more threads than cores only queue for it, and
        # the tail latency grows with every thread that waits
        import anyio.to_thread
        anyio.to_thread.current_default_thread_limiter().total_tokens = SEARCH_THREADS
        # one request of each kind through the app itself, before it takes real ones: the framework's
        # first-request work (validators, the schema) is not paid by a user
        import httpx
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://warm-up") as c:
            for m in MODES:
                await c.get("/api/search", params={"q": "what is the warm up", "mode": m})
            await c.get("/", params={"q": "what is the warm up"})
            await c.get("/api/health")
        if ready:  # s11 with --workers: the parent says "serving" once every worker has loaded
            Path(ready, str(os.getpid())).touch()
        yield

    app = FastAPI(title="msmarco-search", version="1.0", docs_url=None, redoc_url=None, lifespan=lifespan,
                  description="Passage search over MS MARCO: the same Searcher as s09_query_retrieve.py.")
    app.state.live = live

    def err(msg: str, status: int = 400):
        return JSONResponse({"error": msg}, status_code=status)

    @app.exception_handler(HTTPException)
    async def http_error(request, exc):  # 404, 405: one line of JSON like every other refusal
        return err(str(exc.detail), exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request, exc):
        return err("bad request: " + "; ".join(str(e.get("msg")) for e in exc.errors())[:300], 400)

    @app.exception_handler(Exception)
    async def any_error(request, exc):  # never a traceback to the client
        return err(f"search failed ({type(exc).__name__}: {one_line(exc, 200)})", 503)

    q_doc = Query(None, description=f"the question (1 to {MAX_QUERY_CHARS:,} characters)")
    mode_doc = Query(None, description=f"one of {', '.join(MODES)}; default: /api/health's default_mode")
    k_doc = Query(None, description=f"results (1 to {MAX_K:,}, shared with s09's -k); default 10")

    def run(request: Request, q, mode, k, page=False):
        """(searcher, query, mode, k, hits, took_ms); BadInput or QueryError for the user."""
        check_query_string(request.scope.get("query_string", b""))
        s = live.get()
        q, mode, k = parse_params(q, mode, k, s.mode, page=page)
        t0 = time.perf_counter()
        hits = s.search(q, k, mode)
        return s, q, mode, k, hits, (time.perf_counter() - t0) * 1000

    @app.get("/api/search", response_model=SearchOut, responses={400: {"model": ErrorOut}, 414: {"model": ErrorOut}})
    def api_search(request: Request, q: str | None = q_doc, mode: str | None = mode_doc, k: str | None = k_doc):
        try:
            s, q, mode, k, hits, took = run(request, q, mode, k)
        except BadInput as e:
            return err(str(e), e.status)
        except QueryError as e:
            return err(str(e), 422)
        # a Response as it is: the schema above documents it, and skipping the model's validation of
        # every hit on the way out is a good share of a request's time at these latencies
        return ORJSONResponse({"query": q, "mode": mode, "k": k, "took_ms": round(took, 3),
                             "hits": [{"rank": h.rank, "score": float(h.score), "passage_id": int(h.passage_id),
                                       "text": h.text, "doc_id": h.doc_id} for h in hits]})

    @app.get("/api/health", response_model=HealthOut)
    def api_health():
        s = live.get()
        a = s.active
        return {"index": a["name"], "passages": int(a["total"]), "model": str(a.get("checkpoint")),
                "stage": a.get("stage"), "backend": str(a.get("backend") or "chroma"), "default_mode": s.mode,
                "modes": list(MODES), "max_k": MAX_K, "reload_error": live.reload_error}

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page(request: Request, q: str | None = None, mode: str | None = None, k: str | None = None):
        s = live.get()
        shown_mode, shown_k = mode if mode in MODES else s.mode, k if k is not None else "10"
        if q is None:  # the empty page
            return HTMLResponse(search_page(s, "", shown_mode, shown_k))
        try:
            s, q2, mode2, k2, hits, took = run(request, q, mode, k, page=True)
        except (BadInput, QueryError) as e:
            status = e.status if isinstance(e, BadInput) else 422
            return HTMLResponse(search_page(s, q[:MAX_QUERY_CHARS], shown_mode, shown_k, error=str(e)), status)
        return HTMLResponse(search_page(s, q2, mode2, k2, hits, took, hl=hl))

    @app.get("/report", response_class=HTMLResponse, include_in_schema=False)
    def report():
        return HTMLResponse(report_page(data_dir))

    @app.get("/report/{name}", include_in_schema=False)
    def report_image(name: str):
        # only a plot s10 wrote, by its plain file name: nothing outside reports/
        p = Path(data_dir) / "reports" / name
        if not re.fullmatch(r"[\w.-]+_recall\.png", name) or not p.is_file():
            return err(f"no such report file: {name[:80]}", 404)
        return FileResponse(p, media_type="image/png")

    return app


# ------------------------------------------------------------------ the HTTP layer
BAD_REQUEST = b'{"error":"malformed HTTP request (or a URL over 64 KB: a query is at most %d characters)"}' % MAX_QUERY_CHARS


def _json_400(transport):
    transport.write(b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: "
                    + str(len(BAD_REQUEST)).encode() + b"\r\nconnection: close\r\n\r\n" + BAD_REQUEST)
    transport.close()


try:  # uvicorn's fast parser when installed
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _Base
except ImportError:
    from uvicorn.protocols.http.h11_impl import H11Protocol as _Base


class JsonErrorsHTTP(_Base):
    """uvicorn's HTTP protocol, but a request it cannot parse (httptools' URL parser holds at most
    64 KB) gets one line of JSON like every other refusal, not plain text."""

    def send_400_response(self, msg: str) -> None:
        _json_400(self.transport)


HTTP_PROTOCOL = "common.serve:JsonErrorsHTTP"


def refuse_workers(data_dir: Path, workers: int, chroma_host: str | None):
    """More than one worker needs the faiss index or a Chroma server: an embedded Chroma store is
    opened by one process at a time."""
    if workers <= 1:
        return
    from .index import store
    a = store.active(data_dir)
    if (a.get("backend") or "chroma") == "chroma" and not (chroma_host or a.get("chroma_host")):
        raise StageError(f"--workers {workers} needs the faiss index or a Chroma server: index {a['name']} is an "
                         "embedded Chroma store (one process at a time); use --workers 1, or rebuild with "
                         "--backend faiss or --chroma-host")
