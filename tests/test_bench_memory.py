"""The memory measurements of bench/: memtrace.py names where a script's resident memory grew, and
run_bench.py's anonymous figure leaves memory-mapped file pages out."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from helpers import ROOT, bench_tool

GROW = '''import numpy as np
import time

def hold_a_lot():
    a = np.ones(400 * 2**20 // 8)   # 400 MB, touched
    time.sleep(1.5)
    return a

def map_a_file(path):
    m = np.load(path, mmap_mode="r")
    s = float(m.sum())                # every page of a 300 MB file, touched through the map
    time.sleep(1.5)
    return s

if __name__ == "__main__":
    import sys
    time.sleep(0.5)                   # the first sample: before either
    x = hold_a_lot()
    map_a_file(sys.argv[1])
    print("done", len(x))
'''


def test_memtrace_names_the_frame_that_grew_and_splits_mapped_pages(tmp_path):
    script = tmp_path / "grow.py"
    script.write_text(GROW)
    big = tmp_path / "big.npy"
    np.save(big, np.ones(300 * 2**20 // 8))
    out = tmp_path / "trace.json"
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "memtrace.py"), "--interval", "0.1", "--step-mb", "150",
                        "--out", str(out), "--", str(script), str(big)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "done" in r.stdout and "| s | RSS MB |" in r.stdout
    rows = json.loads(out.read_text())["rows"]
    held = [x for x in rows if any("hold_a_lot" in f for f in x["stack"])]
    mapped = [x for x in rows if any("map_a_file" in f for f in x["stack"])]
    assert held and mapped, rows
    # a row each time RSS passes the last mark by 150 MB: the 400 MB array shows at least 250 of it
    assert max(x["RssAnon"] for x in held) >= rows[0]["RssAnon"] + 200
    assert max(x["RssFile"] for x in mapped) >= max(x["RssFile"] for x in held) + 100  # the map: file-backed
    assert max(x["RssAnon"] for x in mapped) < max(x["RssAnon"] for x in held) + 150


def test_run_bench_reports_anonymous_peak_beside_rss(tmp_path):
    rb = bench_tool("run_bench")
    big = tmp_path / "big.npy"
    np.save(big, np.ones(300 * 2**20 // 8))
    code = (f"import numpy as np, time; m = np.load({str(big)!r}, mmap_mode='r'); m.sum(); "
            f"a = np.ones(200 * 2**20 // 8); time.sleep(1)")
    got = rb.run_stage([sys.executable, "-c", code], tmp_path / "log.txt")
    assert got["rc"] == 0
    GB = 1024 ** 3
    assert got["peak_rss"] >= 0.45 * GB          # the map's pages and the array
    assert 0.18 * GB <= got["peak_anon"] <= got["peak_rss"] - 0.25 * GB   # the array, not the map
