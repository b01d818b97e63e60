"""Benchmark (not a test): every stage at MS MARCO scale on this machine.

Writes a synthetic MS MARCO-shaped dataset (N queries x 10 passages, Hugging Face parquet layout,
topic words = real GloVe words so tokenising costs what it costs on real text), runs s00..s10 on
it as subprocesses exactly as a user would, and prints a table: stage, wall seconds, items, items/s,
CPU seconds, peak resident memory of the whole process tree, load average. s09 is measured as
(a) the interactive prompt's time to its "ready in" line and (b) per-query latency of
common.search.Searcher.search(q, 10) in dense and hybrid mode (bench/latency.py).

    python bench/run_bench.py --n 2000               # quick check
    python bench/run_bench.py --n 100000             # MS MARCO v1.1 scale (1M passages)
    python bench/run_bench.py --n 2000 --stages s05,s09 --keep   # re-measure some stages

The stages and their order are common/stages.py's. Everything is written under --work (default:
msmarco-bench in the system's temporary folder), never inside the repo:
    <work>/source_<N>/v1.1/*.parquet   the synthetic dataset (reused with --keep)
    <work>/run_<N>/data/               the pipeline's --data-dir (wiped when s00 runs)
    <work>/run_<N>/logs/<stage>.log    each stage's output
    <work>/bench_<N>.md, .json         the table and the raw figures

Peak RSS is the largest sum, over ~0.1 s polls, of the RSS of the stage's process and all its
descendants (forked workers' shared pages are counted once per process, so it errs high). Peak
anon is the same sum of RssAnon: resident memory less the pages of memory-mapped files (index,
vectors), which the kernel can drop and read again.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]


def _stage_registry():
    """common/stages.py, loaded by path: importing the `common` package here would make the stages'
    own imports below (make_dataset) come from this tree instead of the snapshot they run from."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("_bench_stages", REPO / "common" / "stages.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


_stages = _stage_registry()

# ------------------------------------------------------------------ defaults
N_DEFAULT = 100_000          # queries; x10 passages = MS MARCO v1.1 scale
WORK_DEFAULT = Path(tempfile.gettempdir()) / "msmarco-bench"
EPOCHS_S04 = 2
EPOCHS_S07 = 1
S09_QUERIES = 200            # per-query latency sample (test split)
S09_SETTLE = 20              # seconds latency.py waits after the Searcher starts (README, Speed: the page cache)
TOPIC_RANK0 = 2_000          # topic words = GloVe words ranked 2,000 .. 2,000 + N/2 ("first")
TOPICS = ("first", "spread")  # "spread": N/2 words evenly spaced over every rank from 2,000 (README, v2.1 scale)
POLL_S = 0.1
# every stage in order, s09 (interactive, measured by its own code below) included; s11 is a server
# that never ends by itself: bench/serve_load.py and bench/serve_memory.py measure it
STAGES = [s.key for s in _stages.STAGES if s.in_pipeline or s.key == "s09"]
SCRIPTS = {s.key: s.script for s in _stages.STAGES}
DEVICE_STAGES = {"s04", "s05", "s06", "s07", "s08", "s10"}
# Targets (issue "Speed at full MS MARCO scale on one machine")
TARGETS = {"s05_passages_per_s": 3_000, "s02_passages_per_s": 20_000, "s04_pairs_per_s": 5_000,
           "s09_median_ms": 5.0, "s09_ready_s": 3.0, "peak_rss_gb": 6.0,
           "peak_anon_gb": 8.0}  # anonymous: what the kernel cannot drop (issue "v2.1 on one machine")

GB = 1024 ** 3


# ------------------------------------------------------------------ machine
def machine() -> dict:
    cpu = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "affinity": len(os.sched_getaffinity(0)), "cpu": cpu,
            "mem_total_gb": round(psutil.virtual_memory().total / GB, 1), "loadavg": os.getloadavg(),
            "python": platform.python_version(), "host": platform.node()}


# ------------------------------------------------------------------ measuring a process tree
def anon_bytes(pid: int) -> int:
    """RssAnon of a process (Linux): its resident memory less the file-backed pages (memory-mapped
    index and vector files) that the kernel can drop and read again."""
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def tree_rss(p: psutil.Process) -> tuple[int, int]:
    """(RSS, anonymous RSS) summed over the process and its descendants."""
    total = anon = 0
    try:
        procs = [p] + p.children(recursive=True)
    except psutil.Error:
        return 0, 0
    for q in procs:
        try:
            total += q.memory_info().rss
            anon += anon_bytes(q.pid)
        except psutil.Error:
            pass
    return total, anon


class Watch:
    """Polls a running process tree's RSS every POLL_S seconds in a thread."""

    def __init__(self, pid: int):
        self.p = psutil.Process(pid)
        self.peak = self.peak_anon = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self):
        while not self._stop.is_set():
            rss, anon = tree_rss(self.p)
            self.peak, self.peak_anon = max(self.peak, rss), max(self.peak_anon, anon)
            self._stop.wait(POLL_S)

    def stop(self):
        self._stop.set()
        self._t.join()


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


CODE = REPO  # where the stages run from: a snapshot of HEAD (default) or the live working tree


def snapshot(work: Path) -> Path:
    """The committed HEAD, exported to <work>/code_<sha>, so that uncommitted edits in a shared
    working tree cannot change the code half-way through a run (a checkpoint written by one version
    of common/ and read by another)."""
    sha = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                         text=True, check=True).stdout.strip()
    dst = work / f"code_{sha}"
    if not (dst / "s00_combine_data.py").exists():
        tmp = work / f".code_{sha}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        arc = subprocess.run(["git", "-C", str(REPO), "archive", "HEAD"], capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(tmp)], input=arc, check=True)
        shutil.rmtree(dst, ignore_errors=True)
        tmp.rename(dst)
    return dst


def run_stage(cmd: list[str], log: Path, env=None) -> dict:
    """Run cmd to completion, output to log; wall seconds, CPU seconds, peak tree RSS."""
    load0 = os.getloadavg()[0]
    cpu0 = children_cpu()
    t0 = time.perf_counter()
    with open(log, "w") as f:
        f.write("$ " + " ".join(cmd) + "\n")
        f.flush()
        proc = subprocess.Popen(cmd, cwd=CODE, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        w = Watch(proc.pid)
        rc = proc.wait()
        w.stop()
    wall = time.perf_counter() - t0
    return {"rc": rc, "seconds": wall, "cpu_s": children_cpu() - cpu0, "peak_rss": w.peak, "peak_anon": w.peak_anon,
            "load_start": load0, "load_end": os.getloadavg()[0]}


def tail(path: Path, n: int = 15) -> str:
    try:
        return "".join(open(path, errors="replace").readlines()[-n:])
    except OSError:
        return ""


# ------------------------------------------------------------------ items per stage
def rows(path: Path) -> int:
    import pyarrow.parquet as pq
    return pq.ParquetFile(path).metadata.num_rows


def manifest(path: Path) -> dict:
    p = Path(str(path) + ".manifest.json")
    return json.loads(p.read_text()) if p.exists() else {}


def split_queries_with_positive(d: Path, split: str) -> int:
    import pyarrow.parquet as pq
    q = pq.read_table(d / "queries.parquet", columns=["split", "is_selected"]).to_pydict()
    return sum(1 for s, sel in zip(q["split"], q["is_selected"]) if s == split and 1 in sel)


def training_items(ckpt: Path):
    """(pairs over all epochs, mean training pairs/s from the manifest history)."""
    h = manifest(ckpt).get("stats", {}).get("history", [])
    if not h:
        return None, None, "no history in manifest"
    rates = [e["pairs_per_s"] for e in h]
    return None, sum(rates) / len(rates), f"{len(h)} epoch(s), pairs/s per epoch " + ", ".join(f"{r:,.0f}" for r in rates)


def train_pairs(d: Path, which: str) -> int:
    """Training pairs per epoch as common.train.train_set counts them (split == train rows)."""
    import pyarrow.parquet as pq
    f = "triplets.parquet" if which == "s04" else "hard_negatives.parquet"
    t = pq.read_table(d / f, columns=["split"])
    return sum(1 for s in t["split"].to_pylist() if s == "train")


def items_for(stage: str, d: Path, epochs: int) -> tuple[int | None, float | None, str]:
    """(items, items/s override or None, note)."""
    try:
        if stage in ("s00", "s02", "s05", "s08"):
            return rows(d / "passages.parquet"), None, "passages"
        if stage == "s01":
            return rows(d / "triplets.parquet"), None, "triplets (all splits)"
        if stage == "s03":
            return rows(d / "passages.parquet"), None, "passages (matrix rows: see log)"
        if stage in ("s04", "s07"):
            ck = d / ("s04_model.pt" if stage == "s04" else "s07_model.pt")
            _, rate, note = training_items(ck)
            n = train_pairs(d, stage) * epochs
            return n, rate, f"train pairs x {epochs} epoch(s); items/s = training pairs/s from manifest ({note})"
        if stage == "s06":
            return split_queries_with_positive(d, "train"), None, "train queries"
        if stage == "s10":  # the questions it evaluated (its report: --max-queries bounds them at 10M)
            reports = sorted((d / "reports").glob("eval_*.json"), key=lambda f: f.stat().st_mtime)
            if reports:
                rep = json.loads(reports[-1].read_text())
                return int(rep["queries"]), None, f"{rep['split']} queries evaluated"
            return split_queries_with_positive(d, "test"), None, "test queries"
    except Exception as e:  # the table still prints
        return None, None, f"items unknown ({type(e).__name__}: {e})"
    return None, None, ""


# ------------------------------------------------------------------ s09
def s09_ready(py: str, d: Path, log: Path, mode: str | None = "dense", timeout: float = 600) -> dict:
    """Seconds from process start to the prompt's 'ready in' line (stdin is a pipe), and to the
    first answer: a test query typed the moment the prompt is ready (the HNSW graph and, in hybrid
    mode, BM25 may still be loading in the background then)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")  # a terminal sees the line at once; so must the pipe
    cmd = [py, SCRIPTS["s09"], "--data-dir", str(d)] + (["--mode", mode] if mode else [])
    query = first_test_query(d)
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=CODE, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env)
    w = Watch(proc.pid)
    ready_s, first_s, line_seen, lines = None, None, "", []
    deadline = time.time() + timeout
    for line in proc.stdout:  # the prompt prints the ready line and then waits on stdin
        lines.append(line)
        if "ready in" in line:
            ready_s = time.perf_counter() - t0
            line_seen = line.strip()
            try:
                proc.stdin.write(query + "\n")
                proc.stdin.flush()
            except OSError:
                break
        if "results in" in line or "none of the query" in line or "search failed" in line:
            first_s = time.perf_counter() - t0
            break
        if time.time() > deadline:
            break
    try:
        proc.stdin.write("exit\n")
        proc.stdin.close()
    except OSError:
        pass
    rest = proc.stdout.read()
    rc = proc.wait()
    w.stop()
    log.write_text("$ " + " ".join(cmd) + "\n" + "".join(lines) + rest)
    self_s = None
    if line_seen:
        try:
            self_s = float(line_seen.split("ready in", 1)[1].split("s")[0])
        except ValueError:
            pass
    return {"rc": rc, "ready_s": ready_s, "first_answer_s": first_s, "self_reported_s": self_s, "peak_rss": w.peak,
            "peak_anon": w.peak_anon,
            "load_start": load0, "line": line_seen, "mode": mode or "default"}


def first_test_query(d: Path) -> str:
    import pyarrow.parquet as pq
    q = pq.read_table(d / "queries.parquet", columns=["split", "query"]).to_pydict()
    return next((t for s, t in zip(q["split"], q["query"]) if s == "test"), "what is the")


def s09_latency(py: str, d: Path, n: int, log: Path, settle: float = 0.0) -> dict:
    cmd = [py, str(CODE / "bench" / "latency.py"), "--data-dir", str(d), "--queries", str(n), "--modes", "dense,hybrid",
           "--settle", str(settle)]
    load0 = os.getloadavg()[0]
    r = subprocess.run(cmd, cwd=CODE, capture_output=True, text=True)
    log.write_text("$ " + " ".join(cmd) + "\n" + r.stdout + r.stderr)
    if r.returncode != 0:
        return {"rc": r.returncode, "error": r.stderr[-2000:]}
    out = json.loads(r.stdout.strip().splitlines()[-1])
    out["rc"] = 0
    out["load_start"] = load0
    out["settle_s"] = settle
    return out


# ------------------------------------------------------------------ dataset
def topic_words(words: list[str], n: int, topics: str = "first") -> list[str]:
    """N/2 topic words: the next ones from rank 2,000 ("first": at N = 1,000,000 that is every word
    down to GloVe's rarest), or as many spread evenly over all of those ranks ("spread": the same
    kind of words at any N, so a small N can reproduce the largest set's difficulty)."""
    want = max(50, n // 2)
    if topics == "spread":
        pool = words[TOPIC_RANK0:]
        return pool[::max(1, len(pool) // want)][:want]
    return words[TOPIC_RANK0:TOPIC_RANK0 + want]


def make_dataset(src: Path, n: int, topics: str = "first") -> dict:
    sys.path.insert(0, str(CODE))
    from common import glove, synthetic
    topic = topic_words(glove.words(), n, topics)
    if src.exists():
        shutil.rmtree(src)
    t0 = time.perf_counter()
    info = synthetic.write(src, n, topic_words=topic)
    (src / "bench_dataset.json").write_text(json.dumps({"n": n, "topic_words": len(topic), "topics": topics, **info}))
    return {"seconds": time.perf_counter() - t0, **info}


# ------------------------------------------------------------------ report
def fmt_num(x, nd=0):
    if x is None:
        return "-"
    return f"{x:,.{nd}f}"


def table(res: dict) -> str:
    m = res["machine"]
    out = [f"Machine: {m['nproc']} CPUs ({m['affinity']} usable), {m['cpu']}, {m['mem_total_gb']} GB RAM, "
           f"load average at start {m['loadavg'][0]:.2f} / {m['loadavg'][1]:.2f} / {m['loadavg'][2]:.2f}; "
           f"Python {m['python']}",
           f"Dataset: N = {res['n']:,} queries x 10 passages ({res.get('passages', '?'):,} unique passages)"
           if isinstance(res.get("passages"), int) else f"Dataset: N = {res['n']:,} queries x 10 passages",
           f"Command: {res['command']}  (code: {res.get('code', '?')}, commit {res.get('commit', '?')[:12]})", "",
           "| stage | seconds | items | items/s | CPU s | items/CPU-s | peak RSS (GB) | peak anon (GB) | load 1m | what |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for st in STAGES:
        r = res["stages"].get(st)
        if r is None:
            continue
        if st == "s09":
            for key in ("ready", "ready_default"):
                rd = r.get(key)
                if not rd:
                    continue
                first = f"; first answer {rd['first_answer_s']:.2f} s" if rd.get("first_answer_s") else ""
                out.append(f"| s09 prompt ({rd.get('mode', 'dense')}) | {fmt_num(rd.get('ready_s'), 2)} | | | | | "
                           f"{fmt_num(rd.get('peak_rss', 0) / GB, 2)} | {anon_gb(rd)} | {fmt_num(rd.get('load_start'), 2)} | time to the "
                           f"\"ready in\" line (self-reported {rd.get('self_reported_s')} s){first} |")
            lat = r.get("latency", {})
            for mode in ("dense", "hybrid"):
                x = lat.get(mode)
                if not x:
                    continue
                s = x["search"]
                extra = ""
                if "encode" in x:
                    extra = (f"; encode median {x['encode']['median_ms']:.2f} ms ({x.get('encoder', 'torch')}), "
                             + (f"BM25 rows median {x['bm25_rows']['median_ms']:.2f} ms, " if "bm25_rows" in x else "")
                             + f"index search median {x['index_search']['median_ms']:.2f} ms")
                if x.get("index_recall_at_10") is not None:
                    extra += f"; index recall@10 vs exact {x['index_recall_at_10']:.4f}"
                out.append(f"| s09 {mode} query | {s['median_ms'] / 1000:.4f} | {s['n']} | {1000 / s['mean_ms']:,.0f} | | | "
                           f"| | {fmt_num(lat.get('load_start'), 2)} | median {s['median_ms']:.2f} ms, p95 {s['p95_ms']:.2f} ms"
                           f"{extra}; Searcher start {x['searcher_init_s']:.2f} s |")
            continue
        ips = r.get("items_per_s")
        per_cpu = r["items"] / r["cpu_s"] if r.get("items") and r.get("cpu_s") and st not in ("s04", "s07") else None
        out.append(f"| {st} | {r['seconds']:.1f} | {fmt_num(r.get('items'))} | {fmt_num(ips)} | {r['cpu_s']:.1f} | "
                   f"{fmt_num(per_cpu)} | "
                   f"{r['peak_rss'] / GB:.2f} | {anon_gb(r)} | {r['load_start']:.2f} | {r.get('what', '')}"
                   f"{'' if r['rc'] == 0 else ' **FAILED rc=%d**' % r['rc']} |")
    if res.get("targets"):
        out += ["", "| target | measured | pass |", "|---|---:|---|"]
        for t in res["targets"]:
            out.append(f"| {t['target']} | {t['measured']} | {'PASS' if t['pass'] else ('FAIL' if t['pass'] is not None else 'n/a')} |")
    return "\n".join(out)


def anon_gb(r: dict) -> str:
    return fmt_num(r["peak_anon"] / GB, 2) if r.get("peak_anon") else "-"


def targets(res: dict) -> list[dict]:
    st = res["stages"]
    out = []

    def add(name, val, ok, fmt="{:,.0f}"):
        out.append({"target": name, "measured": fmt.format(val) if val is not None else "-", "pass": ok if val is not None else None})

    if "s05" in st:
        v = st["s05"].get("items_per_s")
        add(f"s05 encode + index >= {TARGETS['s05_passages_per_s']:,} passages/s", v, v is not None and v >= TARGETS["s05_passages_per_s"])
    if "s02" in st:
        v = st["s02"].get("items_per_s")
        add(f"s02 tokenisation >= {TARGETS['s02_passages_per_s']:,} passages/s", v, v is not None and v >= TARGETS["s02_passages_per_s"])
    if "s04" in st:
        v = st["s04"].get("items_per_s")
        add(f"s04 training >= {TARGETS['s04_pairs_per_s']:,} pairs/s (avg encoder)", v, v is not None and v >= TARGETS["s04_pairs_per_s"])
    if "s09" in st:
        lat = st["s09"].get("latency", {})
        for mode in ("dense", "hybrid"):
            if mode in lat:
                v = lat[mode]["search"]["median_ms"]
                add(f"s09 {mode} query median <= {TARGETS['s09_median_ms']} ms", v, v <= TARGETS["s09_median_ms"], "{:.2f} ms")
        for key in ("ready", "ready_default"):
            rd = st["s09"].get(key) or {}
            if rd:
                v = rd.get("ready_s")
                add(f"s09 prompt ({rd.get('mode', 'dense')} mode) ready <= {TARGETS['s09_ready_s']} s", v,
                    v is not None and v <= TARGETS["s09_ready_s"], "{:.2f} s")
    for key, target, what in (("peak_rss", "peak_rss_gb", "peak RSS"), ("peak_anon", "peak_anon_gb", "peak anonymous RSS")):
        peaks = {k: (max(r.get(x, {}).get(key, 0) for x in ("ready", "ready_default")) if k == "s09"
                     else r.get(key, 0)) for k, r in st.items()}
        if any(peaks.values()):  # (runs recorded before the anonymous peak was measured have none)
            k = max(peaks, key=peaks.get)
            v = peaks[k] / GB
            add(f"every stage's {what} <= {TARGETS[target]} GB", v, v <= TARGETS[target], "{:.2f} GB (max: %s)" % k)
    return out


# ------------------------------------------------------------------ main
def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=N_DEFAULT, help="queries (x10 passages); 100,000 = v1.1 scale")
    p.add_argument("--work", type=Path, default=WORK_DEFAULT,
                   help="where the dataset, data dir and report go (default %(default)s)")
    p.add_argument("--stages", default=",".join(STAGES),
                   help="comma list, e.g. s05,s09; earlier stages' outputs must already be in the data dir")
    p.add_argument("--topics", default="first", choices=TOPICS,
                   help="which GloVe words the questions ask about (topic_words())")
    p.add_argument("--keep", action="store_true", help="reuse an existing synthetic dataset of this N")
    p.add_argument("--epochs", type=int, default=EPOCHS_S04, help="s04 epochs")
    p.add_argument("--s07-epochs", type=int, default=EPOCHS_S07)
    p.add_argument("--s09-queries", type=int, default=S09_QUERIES)
    p.add_argument("--s09-settle", type=float, default=S09_SETTLE,
                   help="seconds the latency run waits after the Searcher starts, for the warm-up's read-ahead "
                        "to reach the page cache (0: measure from a cold start)")
    p.add_argument("--device", default=None, help="passed to s04-s08 and s10 (default: theirs, auto)")
    p.add_argument("--python", default=sys.executable)
    p.add_argument("--code", default="snapshot", choices=["snapshot", "worktree"],
                   help="run the stages from an export of the committed HEAD (under --work), or from the live tree")
    p.add_argument("--render", type=Path, default=None, help="only re-print the table of a bench_<N>.json")
    args = p.parse_args()
    if args.render:
        res = json.loads(args.render.read_text())
        res["targets"] = targets(res)
        print(table(res))
        return

    work = args.work.resolve()
    if work == REPO or REPO in work.parents:
        sys.exit("--work must be outside the repository")
    global CODE
    CODE = snapshot(work) if args.code == "snapshot" else REPO
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    bad = [s for s in stages if s not in STAGES]
    if bad:
        sys.exit(f"unknown stage(s) {bad}: choose from {','.join(STAGES)}")
    stages = [s for s in STAGES if s in stages]
    tag = f"{args.n}" + ("" if args.topics == "first" else f"_{args.topics}")
    src = work / f"source_{tag}"
    run_dir = work / f"run_{tag}"
    d = run_dir / "data"
    logs = run_dir / "logs"
    py = args.python
    res = {"n": args.n, "command": "python bench/run_bench.py " + " ".join(sys.argv[1:]), "machine": machine(),
           "started": time.strftime("%Y-%m-%d %H:%M:%S"), "stages": {}, "code": str(CODE),
           "commit": subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True,
                                    text=True).stdout.strip()}
    m = res["machine"]
    print(f"machine: nproc {m['nproc']} ({m['affinity']} usable), {m['cpu']}, {m['mem_total_gb']} GB, "
          f"load average {m['loadavg'][0]:.2f} {m['loadavg'][1]:.2f} {m['loadavg'][2]:.2f}", flush=True)

    if "s00" in stages:
        if args.keep and (src / "bench_dataset.json").exists():
            print(f"dataset: reusing {src}", flush=True)
        else:
            print(f"dataset: writing N = {args.n:,} queries x 10 passages to {src} ...", flush=True)
            info = make_dataset(src, args.n, args.topics)
            res["dataset_s"] = info["seconds"]
            print(f"dataset: written in {info['seconds']:.1f} s", flush=True)
        if d.exists():
            shutil.rmtree(d)
    d.mkdir(parents=True, exist_ok=True)
    logs.mkdir(parents=True, exist_ok=True)

    for st in stages:
        log = logs / f"{st}.log"
        print(f"== {st} (log {log}) load {os.getloadavg()[0]:.2f}", flush=True)
        if st == "s09":
            ready = s09_ready(py, d, logs / "s09_prompt.log")
            ready_default = s09_ready(py, d, logs / "s09_prompt_default.log", mode=None)
            for r in (ready, ready_default):
                print(f"   prompt ({r['mode']} mode) ready after {r['ready_s']} s (self-reported {r['self_reported_s']} s), "
                      f"first answer after {r['first_answer_s']} s, peak RSS {r['peak_rss'] / GB:.2f} GB", flush=True)
            lat = s09_latency(py, d, args.s09_queries, log, args.s09_settle)
            for mode in ("dense", "hybrid"):
                if mode in lat:
                    s = lat[mode]["search"]
                    print(f"   {mode}: median {s['median_ms']:.2f} ms, p95 {s['p95_ms']:.2f} ms over {s['n']} queries",
                          flush=True)
            if lat.get("rc"):
                print(f"   latency run FAILED: {lat.get('error', '')[-500:]}", flush=True)
            res["stages"]["s09"] = {"ready": ready, "ready_default": ready_default, "latency": lat}
            continue
        cmd = [py, SCRIPTS[st]]
        if st == "s00":
            cmd += ["--source", str(src)]
        cmd += ["--data-dir", str(d)]
        if st == "s04":
            cmd += ["--epochs", str(args.epochs), "--wandb", "disabled"]
        if st == "s07":
            cmd += ["--epochs", str(args.s07_epochs), "--wandb", "disabled"]
        if st == "s10":
            cmd += ["--wandb", "disabled"]
        if st == "s05":  # measure a fresh build, also when re-running a subset
            for x in ("chroma", "indexes"):
                shutil.rmtree(d / x, ignore_errors=True)
            (d / "active_index.json").unlink(missing_ok=True)
        if args.device and st in DEVICE_STAGES:
            cmd += ["--device", args.device]
        r = run_stage(cmd, log)
        ep = args.epochs if st == "s04" else args.s07_epochs
        items, rate, what = items_for(st, d, ep) if r["rc"] == 0 else (None, None, "")
        if st in ("s05", "s08") and "already complete" in tail(log, 40):
            what += " (collection already complete: nothing re-encoded; best_model.pt = s04)"
        r.update(items=items, what=what,
                 items_per_s=rate if rate is not None else (items / r["seconds"] if items else None))
        res["stages"][st] = r
        print(f"   {r['seconds']:.1f} s, {fmt_num(r['items'])} items, {fmt_num(r['items_per_s'])}/s, "
              f"CPU {r['cpu_s']:.1f} s, peak RSS {r['peak_rss'] / GB:.2f} GB, rc {r['rc']}", flush=True)
        if r["rc"] != 0:
            print(tail(log), flush=True)
            print(f"{st} failed: stopping (log {log})", flush=True)
            break

    prev = work / f"bench_{tag}.json"
    if set(stages) != set(STAGES) and prev.exists():  # a subset: keep the other stages' figures
        old = json.loads(prev.read_text())
        kept = {k: v for k, v in old.get("stages", {}).items() if k not in res["stages"]}
        if kept:
            res["stages"] = {k: (res["stages"].get(k) or kept[k]) for k in STAGES if k in res["stages"] or k in kept}
            res["command"] += f"  (stages {','.join(sorted(kept))} from the run of {old.get('started')}: " \
                              f"{old.get('command')})"
    try:
        res["passages"] = rows(d / "passages.parquet")
    except Exception:
        pass
    res["targets"] = targets(res)
    res["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    res["loadavg_end"] = os.getloadavg()
    md = table(res)
    print()
    print(md)
    work.mkdir(parents=True, exist_ok=True)
    (work / f"bench_{tag}.md").write_text(md + "\n")
    (work / f"bench_{tag}.json").write_text(json.dumps(res, indent=1, default=str))
    print(f"\nwrote {work / f'bench_{tag}.md'} and .json")


if __name__ == "__main__":
    main()
