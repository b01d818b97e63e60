"""s11_serve.py as a user runs it: the real server as a subprocess on a copy of the session's small
pipeline, asked over HTTP (the API, the page, every bad input, concurrent requests, s08's switch)."""
import functools
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote

import pyarrow.parquet as pq
import pytest

from helpers import ROOT, copy_tree, run

SCRIPT = "<script>alert(1)</script>"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """s11_serve.py in a subprocess; start() returns once it printed its serving line."""

    def __init__(self, data, *args):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "s11_serve.py"), "--data-dir", str(data),
                                      "--port", str(self.port), *args], cwd=ROOT, env=env, text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.lines = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_serving(self, timeout=180):
        t0 = time.time()
        while time.time() - t0 < timeout:
            if any(l.startswith("serving http://") for l in self.lines):
                return self
            if self.proc.poll() is not None:
                time.sleep(0.2)
                raise AssertionError("s11 exited:\n" + "\n".join(self.lines[-30:]))
            time.sleep(0.1)
        raise AssertionError("s11 did not say it is serving:\n" + "\n".join(self.lines[-30:]))

    def get(self, path: str, method="GET"):
        """(status, content type, body) of a raw request: the path is sent as given, unencoded."""
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            c.putrequest(method, path, skip_accept_encoding=True)
            c.endheaders()
            r = c.getresponse()
            return r.status, r.getheader("content-type") or "", r.read()
        finally:
            c.close()

    def json(self, path: str):
        st, ct, body = self.get(path)
        assert "application/json" in ct, (path, st, ct, body[:200])
        return st, json.loads(body)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def copy_data(pipeline_base, tmp_path_factory, name):
    """The session's pipeline, copied: what a test switches or rebuilds never touches the shared one."""
    data, _ = pipeline_base
    return copy_tree(data, tmp_path_factory.mktemp(name) / "data")


@pytest.fixture(scope="module")
def served(pipeline_base, tmp_path_factory):
    d = copy_data(pipeline_base, tmp_path_factory, "serve")
    s = Server(d).wait_serving()
    yield s, d
    s.stop()


@functools.lru_cache(maxsize=None)
def _known(data: str):
    from common.search import Searcher
    se = Searcher(Path(data), mode="bm25")
    try:
        for r in pq.read_table(Path(data) / "queries.parquet").to_pylist():
            if r["split"] != "test":
                continue
            pos = [p for p, x in zip(r["passage_ids"], r["is_selected"]) if x]
            if pos and all(pos[0] in [h.passage_id for h in se.search(r["query"], 3, m)] for m in ("bm25", "hybrid")):
                return pos[0], r["query"]
    finally:
        se.close()
    raise AssertionError("no test question whose passage BM25 and hybrid both rank in their top 3")


def known_passage(data):
    """A test question and its labelled passage, which s09's Searcher ranks in the top 3 by BM25 and by
    hybrid (the server must too)."""
    return _known(str(data))


def test_serving_line_and_health(served):
    s, d = served
    line = next(l for l in s.lines if l.startswith("serving "))
    assert line.startswith(f"serving {s.url} (index passages-"), line
    st, h = s.json("/api/health")
    active = json.loads((d / "active_index.json").read_text())
    assert st == 200 and h["index"] == active["name"] and h["passages"] == active["total"]
    assert h["default_mode"] in ("dense", "bm25", "hybrid") and h["max_k"] == 1000
    assert h["model"] == active["checkpoint"]


@pytest.mark.parametrize("mode", ["bm25", "hybrid", "dense"])
def test_api_search_finds_the_known_passage(served, mode):
    s, d = served
    pid, q = known_passage(d)
    st, r = s.json(f"/api/search?q={quote(q)}&k=10&mode={mode}")
    assert st == 200, r
    assert r["query"] == q and r["mode"] == mode and r["k"] == 10 and r["took_ms"] >= 0
    hits = r["hits"]
    assert [h["rank"] for h in hits] == list(range(1, len(hits) + 1)) and len(hits) == 10
    assert all(set(h) >= {"rank", "score", "passage_id", "text"} for h in hits)
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    if mode != "dense":  # the dense tower of a 4-epoch toy model need not rank a copied passage first
        assert pid in [h["passage_id"] for h in hits[:3]], (pid, hits[:3])


def test_api_answers_like_searcher(served):
    """One query path: the API's ranking is Searcher.search's (s09's) for the same query."""
    s, d = served
    from common.search import Searcher
    _, q = known_passage(d)
    ref = Searcher(d, mode="hybrid")
    want = [(h.passage_id, round(h.score, 4)) for h in ref.search(q, 5)]
    ref.close()
    _, r = s.json(f"/api/search?q={quote(q)}&k=5&mode=hybrid")
    assert [(h["passage_id"], round(h["score"], 4)) for h in r["hits"]] == want


BAD = {
    "missing q": "/api/search",
    "empty q": "/api/search?q=",
    "blank q": "/api/search?q=%20%20+",
    "k not a number": "/api/search?q=water&k=ten",
    "k a float": "/api/search?q=water&k=2.5",
    "k zero": "/api/search?q=water&k=0",
    "k negative": "/api/search?q=water&k=-3",
    "k past the limit": "/api/search?q=water&k=1001",
    "k huge": "/api/search?q=water&k=99999999999999999999",
    "unknown mode": "/api/search?q=water&mode=semantic",
    "3 KB of query": "/api/search?q=" + "water+" * 500,
    "100 KB of query": "/api/search?q=" + "a" * 100_000,
    "bad percent-encoding": "/api/search?q=wat%zzer",
    "truncated percent-encoding": "/api/search?q=water%2",
    "invalid UTF-8": "/api/search?q=%ff%fewater",
    "overlong UTF-8": "/api/search?q=%c0%afwater",
    "no word it knows": "/api/search?q=zzqxqzzqx+qqqxzq",
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_a_4xx_json_line(served, case):
    s, _ = served
    st, ct, body = s.get(BAD[case])
    assert 400 <= st < 500, (case, st, body[:200])
    assert "application/json" in ct, (case, ct)
    text = body.decode()
    assert "\n" not in text.strip() and "Traceback" not in text, text
    msg = json.loads(text)["error"]
    assert msg and len(msg) < 300, msg


def test_the_server_keeps_serving_after_bad_input(served):
    s, d = served
    for path in BAD.values():
        s.get(path)
    assert s.get("/api/health")[0] == 200
    _, q = known_passage(d)
    st, r = s.json(f"/api/search?q={quote(q)}&k=1000&mode=dense")  # the limit itself is allowed
    assert st == 200 and r["k"] == 1000


def test_k_limit_is_s09s():
    from common import search
    r = subprocess.run([sys.executable, str(ROOT / "s09_query_retrieve.py"), "--help"], capture_output=True, text=True)
    assert f"1 to {search.MAX_K:,}" in r.stdout


def test_only_reads(served):
    s, _ = served
    for method in ("POST", "PUT", "DELETE"):
        st, ct, body = s.get("/api/search?q=water", method=method)
        assert st == 405 and "application/json" in ct, (method, st)
    assert s.get("/docs")[0] == 404  # the CDN-loaded docs page is not served
    st, schema = s.json("/openapi.json")
    assert st == 200 and "/api/search" in schema["paths"] and "/api/health" in schema["paths"]
    assert s.get("/report/..%2f..%2factive_index.json")[0] == 404
    assert s.get("/report/../active_index.json")[0] == 404


def test_concurrent_requests_answer_as_sequential_ones(served):
    s, d = served
    _, q = known_passage(d)
    paths = [f"/api/search?q={quote(q)}&k=5&mode={m}" for m in ("dense", "bm25", "hybrid")]
    want = {p: [h["passage_id"] for h in s.json(p)[1]["hits"]] for p in paths}
    with ThreadPoolExecutor(8) as ex:
        got = list(ex.map(lambda p: (p, s.json(p)), paths * 20))
    for p, (st, r) in got:
        assert st == 200 and [h["passage_id"] for h in r["hits"]] == want[p]


def test_page_shows_results_highlighted_and_escaped(served):
    s, d = served
    pid, q = known_passage(d)
    st, ct, body = s.get(f"/?q={quote(q)}&mode=bm25&k=5")
    page = body.decode()
    assert st == 200 and "text/html" in ct
    assert f"<span class=pid>{pid}</span>" in page and "<mark>" in page and " ms</p>" in page
    assert f'value="{q}"' in page or "value=" in page
    st, _, body = s.get("/?q=" + quote(SCRIPT))
    page = body.decode()
    assert 400 <= st < 500 and SCRIPT not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    st, _, body = s.get("/?q=" + quote(SCRIPT + " " + q) + "&mode=bm25")
    assert st == 200 and SCRIPT not in body.decode()
    st, _, body = s.get("/?q=%ff")  # the page refuses bad input too, as a page
    assert st == 400 and "error" in body.decode()


def test_highlighter_escapes_passage_text():
    from common.serve import Highlighter
    h = Highlighter()
    out = h.mark("<b>Corporations</b> & a <script>x</script>", h.stems("what is a corporation"))
    assert out == "&lt;b&gt;<mark>Corporations</mark>&lt;/b&gt; &amp; a &lt;script&gt;x&lt;/script&gt;"


def test_report_page(served):
    s, d = served
    st, ct, body = s.get("/report")
    page = body.decode()
    assert st == 200 and "<table>" in page
    imgs = [p.name for p in (d / "reports").glob("*_recall.png")]
    assert imgs and f"/report/{imgs[0]}" in page
    st, ct, body = s.get(f"/report/{imgs[0]}")
    assert st == 200 and ct == "image/png" and body[:4] == b"\x89PNG"


def test_workers_refused_with_an_embedded_chroma_store(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    (d / "active_index.json").write_text(json.dumps({"name": "passages-x", "checkpoint": "s04_model.pt", "total": 10,
                                                     "backend": "chroma", "chroma_host": None}))
    r = run("s11_serve.py", d, "--workers", "2", check=False)
    lines = (r.stdout + r.stderr).strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and "--workers 2" in lines[0] and "Chroma" in lines[0], lines


def test_two_workers_serve(pipeline_base, tmp_path_factory):
    d = copy_data(pipeline_base, tmp_path_factory, "workers")
    s = Server(d, "--workers", "2").wait_serving()
    try:
        assert "2 workers" in next(l for l in s.lines if l.startswith("serving "))
        with ThreadPoolExecutor(4) as ex:
            got = list(ex.map(lambda _: s.json("/api/search?q=water&mode=bm25")[0], range(20)))
        assert set(got) <= {200, 422}
    finally:
        s.stop()


def test_a_switch_by_s08_is_picked_up_without_a_failed_request(pipeline_base, tmp_path_factory):
    """Search in a loop while s08 builds another index and switches data/active_index.json."""
    d = copy_data(pipeline_base, tmp_path_factory, "switch")
    s = Server(d).wait_serving()
    try:
        before = s.json("/api/health")[1]["index"]
        _, q = known_passage(d)
        stop, results = threading.Event(), []

        def loop():
            while not stop.is_set():
                st, ct, body = s.get(f"/api/search?q={quote(q)}&k=5&mode=hybrid")
                results.append((st, json.loads(body).get("hits", [None])[0] if st == 200 else body[:200]))

        t = threading.Thread(target=loop)
        t.start()
        # another index: other build settings give it another name; s08 switches to it when complete
        run("s08_reencode_all.py", d, "--ef-construction", "40")
        after = json.loads((d / "active_index.json").read_text())["name"]
        assert after != before
        t0 = time.time()
        while s.json("/api/health")[1]["index"] != after:
            assert time.time() - t0 < 60, "the server did not pick up the new index"
            time.sleep(0.2)
        n_switch = len(results)
        time.sleep(1.0)  # a few requests answered by the new index
        stop.set()
        t.join()
        bad = [r for r in results if r[0] != 200]
        assert not bad and len(results) > n_switch > 0, (bad[:3], len(results), n_switch)
        assert s.json("/api/health")[1]["reload_error"] is None
    finally:
        s.stop()


def test_one_line_when_it_cannot_start(tmp_path):
    r = run("s11_serve.py", tmp_path / "nothing", check=False)
    lines = (r.stdout + r.stderr).strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and "s05_encode_docs_to_chromadb.py" in lines[0], lines
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        r = run("s11_serve.py", tmp_path, "--port", str(busy.getsockname()[1]), check=False)
    lines = (r.stdout + r.stderr).strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and "--port" in lines[0], lines
