"""Load on a running s11_serve.py: C closed-loop clients (httpx, asyncio, one keep-alive connection
each) for T seconds on loopback, each sending its next question as soon as the last is answered.
Questions come from the data dir's queries.parquet (test split first), cycled. Stops by itself
after --seconds (or --max-requests); a request that fails or is not 200 counts as an error.

    python s11_serve.py --data-dir DATA --workers 2 &
    python bench/serve_load.py --data-dir DATA --clients 8 --seconds 20 --mode hybrid
    # -> hybrid: 8 clients, 20.0 s: 5,432 requests, 271.6 requests/s, p50 27.1 ms, p95 41.0 ms, p99 55.2 ms, 0 errors; generator CPU 61% of a core

Prints one line per mode (also as JSON with --json). The generator runs on the same machine as the
server: its own CPU (user + system seconds over wall seconds) is printed, since it takes from the server.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def questions(data_dir: Path, n: int = 5000) -> list[str]:
    import pyarrow.parquet as pq
    t = pq.read_table(Path(data_dir) / "queries.parquet", columns=["split", "query"]).to_pylist()
    order = {"test": 0, "validation": 1}
    t.sort(key=lambda r: order.get(r["split"], 2))
    return [r["query"] for r in t[:n]]


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))] if xs else float("nan")


async def run_load(url: str, qs: list[str], mode: str, clients: int, seconds: float, max_requests: int, k: int):
    import httpx
    lat, errors, sent = [], [], 0
    deadline = time.perf_counter() + seconds

    async def client(i: int):
        nonlocal sent
        async with httpx.AsyncClient(base_url=url, timeout=30) as c:
            j = i
            while time.perf_counter() < deadline and sent < max_requests:
                sent += 1
                q = qs[j % len(qs)]
                j += clients
                t0 = time.perf_counter()
                try:
                    r = await c.get("/api/search", params={"q": q, "mode": mode, "k": k})
                    ok = r.status_code == 200 or (r.status_code == 422 and "vocabulary" in r.text)
                    if not ok:
                        errors.append(f"{r.status_code} {r.text[:100]}")
                except Exception as e:
                    errors.append(type(e).__name__)
                    continue
                lat.append((time.perf_counter() - t0) * 1000)

    cpu0, t0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(clients)))
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return {"mode": mode, "clients": clients, "seconds": round(wall, 2), "requests": len(lat) + len(errors),
            "rps": round(len(lat) / wall, 1), "p50_ms": round(pct(lat, 0.5), 2), "p95_ms": round(pct(lat, 0.95), 2),
            "p99_ms": round(pct(lat, 0.99), 2), "errors": len(errors), "first_errors": errors[:3],
            "generator_cpu": round(cpu / wall, 2)}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default="http://127.0.0.1:8080")
    p.add_argument("--data-dir", type=Path, default=Path("data"), help="where the questions come from")
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--max-requests", type=int, default=200_000)
    p.add_argument("--mode", default="hybrid,dense", help="comma-separated; one run per mode")
    p.add_argument("-k", type=int, default=10)
    p.add_argument("--warm", type=int, default=200, help="requests sent first per mode, not measured")
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    qs = questions(a.data_dir)
    for mode in a.mode.split(","):
        if a.warm:
            asyncio.run(run_load(a.url, qs[::-1], mode, a.clients, 60, a.warm, a.k))
        r = asyncio.run(run_load(a.url, qs, mode, a.clients, a.seconds, a.max_requests, a.k))
        if a.json:
            print(json.dumps(r))
        else:
            print(f"{mode}: {r['clients']} clients, {r['seconds']} s: {r['requests']:,} requests, {r['rps']:,} requests/s, "
                  f"p50 {r['p50_ms']} ms, p95 {r['p95_ms']} ms, p99 {r['p99_ms']} ms, {r['errors']} errors"
                  + (f" {r['first_errors']}" if r["errors"] else "") + f"; generator CPU {r['generator_cpu']:.0%} of a core",
                  flush=True)


if __name__ == "__main__":
    main()
