"""Memory of s11_serve.py's workers: starts it with --workers N for each N, sends --warm questions
(8 clients, bench/serve_load.py), then reads /proc/<pid>/smaps_rollup of every worker: proportional
resident memory (Pss: shared pages divided among the processes mapping them) and anonymous memory
(Anonymous: each process's own, never shared), in MB, per worker and summed. Linux only.

    python bench/serve_memory.py --data-dir DATA --workers 1,4 --warm 1000
    # -> 4 workers after 1,000 hybrid questions: Pss 2,000 MB in all (500 per worker; file 400, anon 100), Anonymous 400 MB in all, ...
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FIELDS = ("Rss", "Pss", "Pss_Anon", "Pss_File", "Anonymous")


def rollup(pid: int) -> dict:
    out = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        k, v = line.split(":", 1)
        if k in FIELDS:
            out[k] = int(v.split()[0]) / 1024  # kB -> MB
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def workers_of(proc) -> list[int]:
    """The processes that answer requests: s11 itself with one worker, else uvicorn's spawned children."""
    import psutil
    kids = [c for c in psutil.Process(proc.pid).children(recursive=True) if "spawn_main" in " ".join(c.cmdline())]
    return [c.pid for c in kids] or [proc.pid]


def measure(data_dir: Path, n: int, warm: int, mode: str) -> dict:
    from bench.serve_load import questions, run_load
    port = free_port()
    p = subprocess.Popen([sys.executable, str(ROOT / "s11_serve.py"), "--data-dir", str(data_dir), "--port", str(port),
                          "--workers", str(n)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        t0 = time.time()
        for line in p.stdout:
            if line.startswith("serving "):
                break
        else:
            raise SystemExit(f"s11 --workers {n} exited before serving")
        ready_s = time.time() - t0
        load = asyncio.run(run_load(f"http://127.0.0.1:{port}", questions(data_dir), mode, 8, 600, warm, 10))
        time.sleep(1)
        per = {pid: rollup(pid) for pid in workers_of(p)}
        total = {k: round(sum(r.get(k, 0) for r in per.values())) for k in FIELDS}
        return {"workers": n, "ready_s": round(ready_s, 1), "warm_requests": load["requests"], "errors": load["errors"],
                "mode": mode, "total_mb": total, "per_worker_mb": [{k: round(v) for k, v in r.items()} for r in per.values()]}
    finally:
        p.terminate()
        p.wait(30)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", type=Path, default=Path("data"))
    ap.add_argument("--workers", default="1,4")
    ap.add_argument("--warm", type=int, default=1000, help="questions answered before memory is read")
    ap.add_argument("--mode", default="hybrid")
    a = ap.parse_args()
    for n in (int(x) for x in a.workers.split(",")):
        r = measure(a.data_dir, n, a.warm, a.mode)
        t = r["total_mb"]
        print(f"{n} worker{'s' if n > 1 else ''} after {r['warm_requests']:,} {r['mode']} questions ({r['errors']} errors): "
              f"Pss {t['Pss']:,} MB in all ({t['Pss'] // n:,} per worker; file {t['Pss_File']:,}, anon {t['Pss_Anon']:,} in all), "
              f"Anonymous {t['Anonymous']:,} MB in all, Rss {t['Rss']:,} MB in all; ready in {r['ready_s']} s", flush=True)
        print(json.dumps(r), flush=True)


if __name__ == "__main__":
    main()
