"""Where a stage's resident memory grows: runs a script in this process and, each time its resident
size passes its previous high mark by --step-mb, records the main thread's stack (the frames in
this repository). Prints one row per step: seconds, RSS, anonymous and file-backed parts, and the
innermost project frames at that moment.

    python bench/memtrace.py -- s06_mine_hard_negatives.py --data-dir DATA
    python bench/memtrace.py --step-mb 500 --out trace.json -- s10_evaluate.py --data-dir DATA --wandb disabled
"""
from __future__ import annotations

import argparse
import json
import runpy
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def rss() -> dict:
    """VmRSS, RssAnon, RssFile of this process in MB (Linux)."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        k, _, v = line.partition(":")
        if k in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
            out[k] = int(v.split()[0]) / 1024
    return out


def project_stack(frame, depth: int, script: Path) -> list[str]:
    """file:line function for the frames of the traced script and of this repository (this tool's
    own left out), innermost first."""
    out = []
    while frame is not None and len(out) < depth:
        f = Path(frame.f_code.co_filename).resolve()
        if f == script:
            out.append(f"{f.name}:{frame.f_lineno} {frame.f_code.co_name}")
        elif f.is_relative_to(ROOT) and f.relative_to(ROOT).parts[0] != "bench":
            out.append(f"{f.relative_to(ROOT)}:{frame.f_lineno} {frame.f_code.co_name}")
        frame = frame.f_back
    return out


class Tracer(threading.Thread):
    def __init__(self, interval: float, step_mb: float, depth: int, script: Path):
        super().__init__(daemon=True)
        self.interval, self.step, self.depth, self.script = interval, step_mb, depth, script
        self.main = threading.main_thread().ident
        self.rows, self.mark, self.t0, self.stop = [], 0.0, time.perf_counter(), threading.Event()

    def sample(self):
        m = rss()
        if m["VmRSS"] >= self.mark + self.step or not self.rows:
            frame = sys._current_frames().get(self.main)
            self.rows.append({"s": round(time.perf_counter() - self.t0, 1), **{k: round(v) for k, v in m.items()},
                              "stack": project_stack(frame, self.depth, self.script)})
            self.mark = m["VmRSS"]

    def run(self):
        while not self.stop.wait(self.interval):
            self.sample()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--interval", type=float, default=0.5, help="seconds between samples")
    p.add_argument("--step-mb", type=float, default=250, help="record when RSS passes the last mark by this")
    p.add_argument("--depth", type=int, default=4, help="project frames shown per row")
    p.add_argument("--out", default=None, help="also write the rows as JSON here")
    p.add_argument("script", help="the stage script, then its arguments (after --)")
    p.add_argument("args", nargs=argparse.REMAINDER)
    a = p.parse_args()
    script = Path(a.script)
    sys.argv = [str(script)] + a.args
    sys.path.insert(0, str(script.resolve().parent))
    tr = Tracer(a.interval, a.step_mb, a.depth, script.resolve())
    tr.start()
    code = 0
    try:
        runpy.run_path(str(script), run_name="__main__")
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        tr.stop.set()
        tr.sample()
        end = rss()
        print(f"\nmemtrace: {script.name}, peak RSS {end['VmHWM'] / 1024:.2f} GB")
        print("| s | RSS MB | anon MB | file MB | where (innermost first) |\n|---:|---:|---:|---:|---|")
        for r in tr.rows:
            print(f"| {r['s']} | {r['VmRSS']:,} | {r.get('RssAnon', 0):,} | {r.get('RssFile', 0):,} | "
                  f"{' <- '.join(r['stack']) or '-'} |")
        if a.out:
            Path(a.out).write_text(json.dumps({"script": str(script), "args": a.args, "peak_mb": end["VmHWM"],
                                               "rows": tr.rows}, indent=1))
    sys.exit(code)


if __name__ == "__main__":
    main()
