"""ChromaDB as a server: a real `chroma run` on loopback; s05 indexes through HttpClient (also
after being killed part-way), s09 answers, the server restarts, and the answers are the same.
Reading while another process writes is safe here (no embedded-store lock is involved)."""
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from helpers import copy_data, run
from launch import run_killed

pytestmark = pytest.mark.slow  # a Chroma server and s00-s05 (~30 s)

CHROMA = Path(sys.executable).parent / "chroma"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, path: Path, port: int):
        self.path, self.port, self.proc = path, port, None

    def start(self, timeout=90):
        log = open(self.path.parent / f"chroma-{self.port}.log", "ab")
        self.proc = subprocess.Popen([str(CHROMA), "run", "--path", str(self.path), "--port", str(self.port),
                                      "--host", "127.0.0.1"], stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"chroma exited ({self.proc.returncode}); see {log.name}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/api/v2/heartbeat", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"no heartbeat from chroma on port {self.port} within {timeout} s")

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=20)
        self.proc = None


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if not CHROMA.exists():
        pytest.skip("no chroma CLI in the venv")
    srv = Server(tmp_path_factory.mktemp("chroma-server") / "db", free_port())
    try:
        srv.start()
        yield srv
    finally:  # the server never outlives the tests, whatever happened
        srv.stop()


@pytest.fixture(scope="module")
def indexed(server, tmp_path_factory):
    d = copy_data(tmp_path_factory, "server")
    args = ("--chroma-host", "127.0.0.1", "--chroma-port", str(server.port), "--encode-batch", "64",
            "--write-batch", "32")
    killed = run_killed("s05_encode_docs_to_chromadb.py", d, 3, *args)
    assert killed.returncode == -9
    r = run("s05_encode_docs_to_chromadb.py", d, *args)
    assert "resuming" in r.stdout
    assert not (d / "chroma").exists()  # nothing went to the embedded store
    return d


def http_collection(port, name):
    import chromadb
    from chromadb.config import Settings
    c = chromadb.HttpClient(host="127.0.0.1", port=port, settings=Settings(anonymized_telemetry=False))
    return c.get_collection(name, embedding_function=None)


def answers(d, queries):
    from common.search import Searcher
    s = Searcher(d)  # host and port come from active_index.json
    return [[h.passage_id for h in s.search(q, 5)] for q in queries]


def test_index_query_restart_query(server, indexed):
    import json
    d = indexed
    a = json.loads((d / "active_index.json").read_text())
    assert a["chroma_host"] == "127.0.0.1" and a["chroma_port"] == server.port
    want = set(pq.read_table(d / "passages.parquet", columns=["passage_id"])["passage_id"].to_pylist())
    col = http_collection(server.port, a["name"])
    ids = [int(x) for x in col.get(include=[])["ids"]]
    assert col.count() == len(want) == len(ids) == len(set(ids)) and set(ids) == want
    queries = pq.read_table(d / "queries.parquet", columns=["query"])["query"].to_pylist()[:20]
    before = answers(d, queries)
    r = run("s09_query_retrieve.py", d, "--query", queries[0], "-k", "5")
    assert " 1. " in r.stdout and "warning" not in r.stderr
    server.stop()
    r = run("s09_query_retrieve.py", d, "--query", queries[0], check=False)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "chroma run" in r.stderr
    server.start()
    assert answers(d, queries) == before


WRITER = r"""
import sys, time
import numpy as np
import chromadb
c = chromadb.HttpClient(host="127.0.0.1", port=int(sys.argv[1]))
col = c.get_or_create_collection("scratch", embedding_function=None)
print("ready", flush=True)
rng = np.random.default_rng(0)
for i in range(100_000):
    col.upsert(ids=[str(j) for j in range(i * 50, i * 50 + 50)], embeddings=rng.normal(size=(50, 8)).astype(np.float32))
"""


def test_reading_while_another_process_writes(server, indexed):
    d = indexed
    p = subprocess.Popen([sys.executable, "-c", WRITER, str(server.port)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "ready", p.stderr.read()
        queries = pq.read_table(d / "queries.parquet", columns=["query"])["query"].to_pylist()[:10]
        r = run("s09_query_retrieve.py", d, "-k", "3", input="\n".join(queries) + "\nexit\n")
        assert r.stdout.count(" 1. ") == len(queries) and "Traceback" not in r.stderr
        assert p.poll() is None  # the writer was still writing all along
    finally:
        p.kill()
        p.wait(timeout=30)
