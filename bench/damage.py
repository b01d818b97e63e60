"""Damaged files x readers: what each stage does when a file another stage wrote is cut short,
replaced by random bytes, replaced by a valid file of the wrong shape, or deleted.

For each case the data folder is copied (hard links: cheap, and every stage replaces files by
rename, so the original is never written), one file is damaged in the copy, and the reading stage
is run as a user runs it. Each outcome is classified:

    one line   exit != 0, stderr is one line that names a script (sNN_....py), no traceback
    exit 0     the stage ran (fine where the file is optional: e.g. no reports/hybrid.json yet)
    TRACEBACK  a Python traceback (its last line is shown)
    other      anything else (several lines, no script named, a timeout)

and "touched" lists files of the copy, other than the damaged one, that the run changed or deleted.

    python bench/damage.py --data-dir DATA --json after.json                  # this checkout
    python bench/damage.py --data-dir OLD_DATA --code OLD_CHECKOUT --json before.json
    python bench/damage.py --table before.json after.json                     # the table
"""
from __future__ import annotations

import argparse
import fnmatch
import json
import os
import pickle
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# What each reader reads (globs relative to the data folder; "INDEX" = the active index's name).
READERS = {
    "s09": (["s09_query_retrieve.py", "--query", "what is a corporation", "-k", "3"],
            ["active_index.json", "indexes/INDEX.*", "bm25/*", "reports/hybrid.json", "vocab.pkl",
             "passages.parquet", "vocab.pkl.manifest.json", "passages.parquet.manifest.json"]),
    "s04": (["s04_train_tower.py", "--epochs", "1", "--val-pool", "2000", "--wandb", "disabled",
             "--out", "damage_s04.pt"],
            ["queries.parquet", "triplets.parquet", "vocab.pkl", "passages_tok.parquet", "queries_tok.parquet",
             "embeddings.npy", "teacher/*", "*.parquet.manifest.json", "vocab.pkl.manifest.json",
             "embeddings.npy.manifest.json"]),
    "s05": (["s05_encode_docs_to_chromadb.py", "--no-activate"],
            ["vocab.pkl", "passages_tok.parquet", "s04_model.pt", "s04_model.pt.manifest.json"]),
}
DAMAGES = ("cut", "garbage", "shape", "deleted")


def files_of(data: Path) -> list[str]:
    """The files a damage may hit: everything with a manifest (and the manifests), the active
    pointer, the active index's files, data/bm25/, reports/hybrid.json, and data/teacher/."""
    out = set()
    for m in data.rglob("*.manifest.json"):
        if "external" in m.parts or "wandb" in m.parts:
            continue
        out.add(str(m.relative_to(data)))
        f = m.with_name(m.name[:-len(".manifest.json")])
        if f.is_file():
            out.add(str(f.relative_to(data)))
    for pat in ("active_index.json", "bm25/*", "reports/hybrid.json", "teacher/*"):
        out.update(str(p.relative_to(data)) for p in data.glob(pat) if p.is_file())
    try:
        name = json.loads((data / "active_index.json").read_text())["name"]
        out.update(str(p.relative_to(data)) for p in (data / "indexes").glob(f"{name}.*") if p.is_file())
    except (OSError, ValueError, KeyError):
        pass
    return sorted(out)


def damage(path: Path, how: str, seed: int = 0):
    """Replace `path` (never write into it: the copy's file is a hard link to the original)."""
    import numpy as np
    raw = path.read_bytes()
    path.unlink()
    if how == "deleted":
        return
    if how == "cut":
        path.write_bytes(raw[:len(raw) // 2])
    elif how == "garbage":
        path.write_bytes(np.random.default_rng(seed).bytes(4096))
    elif how == "shape":  # a valid file of the same format with the wrong content
        tmp = path.with_name(path.name + ".orig")
        tmp.write_bytes(raw)
        try:
            suffix = path.suffix
            if suffix == ".npy":
                a = np.load(tmp, allow_pickle=False)
                with open(path, "wb") as f:  # one row fewer (np.save(path) would add a suffix)
                    np.save(f, a[:-1] if a.ndim and len(a) > 1 else np.zeros((3, 3), a.dtype))
            elif suffix == ".parquet":
                import pyarrow.parquet as pq
                t = pq.read_table(tmp)
                pq.write_table(t.slice(0, max(1, t.num_rows // 2)).drop_columns(t.column_names[-1:]), path)
            elif suffix == ".json":
                obj = json.loads(raw)
                path.write_text(json.dumps([obj] if isinstance(obj, dict) else {"unexpected": obj}))
            elif suffix == ".pkl":
                path.write_bytes(pickle.dumps(["not", "a", "vocabulary"]))
            elif suffix == ".npz":
                with open(path, "wb") as f:
                    np.savez(f, other=np.zeros(3))
            else:
                raise ValueError("n/a")
        finally:
            tmp.unlink()
    else:
        raise ValueError(how)


def shape_applies(rel: str) -> bool:
    return Path(rel).suffix in (".npy", ".parquet", ".json", ".pkl", ".npz")


def link_copy(src: Path, dst: Path):
    """Hard links, except data/chroma and writer locks (a lock file is opened for writing)."""
    def copy(s, d):
        if "chroma" in Path(s).relative_to(src).parts[:1] or Path(s).name == "writer.lock":
            return shutil.copy2(s, d)
        return os.link(s, d)
    shutil.copytree(src, dst, copy_function=copy, symlinks=True,
                    ignore=shutil.ignore_patterns("wandb", "external"))


def snapshot(d: Path) -> dict:
    out = {}
    for p in d.rglob("*"):
        if p.is_file() and "wandb" not in p.parts and p.name != "writer.lock":  # a lock is no output
            st = p.stat()
            out[str(p.relative_to(d))] = (st.st_ino, st.st_size, st.st_mtime_ns)
    return out


SCRIPT = re.compile(r"s\d\d_\w+\.py")


def classify(rc: int, err: str) -> tuple[str, str]:
    lines = [ln for ln in err.splitlines() if ln.strip() and "it/s]" not in ln and "%|" not in ln
             and not ln.startswith("warning:")]
    if "Traceback (most recent call last)" in err:
        return "TRACEBACK", (lines[-1] if lines else "")[:160]
    if rc == 0:
        return "exit 0", ""
    if rc in (124, -9):
        return "other", "timeout"
    if len(lines) == 1 and SCRIPT.search(lines[0]):
        return "one line", lines[0][:220]
    return "other", " | ".join(lines[-3:])[:220]


def run_case(code: Path, data: Path, work: Path, rel: str, how: str, reader: str, timeout: int) -> dict:
    case = work / "case"
    shutil.rmtree(case, ignore_errors=True)
    link_copy(data, case)
    damage(case / rel, how)
    before = snapshot(case)
    before.pop(rel, None)
    cmd = [sys.executable, str(code / READERS[reader][0][0]), "--data-dir", str(case), *READERS[reader][0][1:]]
    env = dict(os.environ, HF_HUB_OFFLINE="1", WANDB_MODE="disabled", PYTHONUNBUFFERED="1")
    t0 = time.perf_counter()
    try:
        r = subprocess.run(cmd, cwd=code, capture_output=True, text=True, timeout=timeout, env=env)
        rc, err = r.returncode, r.stderr
    except subprocess.TimeoutExpired:
        rc, err = 124, ""
    after = snapshot(case)
    touched = sorted(k for k, v in before.items() if after.get(k) != v)
    outcome, msg = classify(rc, err)
    shutil.rmtree(case, ignore_errors=True)
    return {"file": rel, "damage": how, "reader": reader, "rc": rc, "outcome": outcome, "message": msg,
            "touched": touched, "seconds": round(time.perf_counter() - t0, 1)}


def cases(data: Path, readers: list[str], damages: list[str], only: str | None):
    try:
        index = json.loads((data / "active_index.json").read_text())["name"]
    except (OSError, ValueError, KeyError):
        index = "NONE"
    for rel in files_of(data):
        if only and not fnmatch.fnmatch(rel, only):
            continue
        for reader in readers:
            pats = [p.replace("INDEX", index) for p in READERS[reader][1]]
            if not any(fnmatch.fnmatch(rel, p) for p in pats):
                continue
            for how in damages:
                if how == "shape" and not shape_applies(rel):
                    continue
                if rel.endswith(".manifest.json") and how in ("shape", "deleted"):
                    continue  # a deleted manifest is the "no manifest" case tests/ already cover
                yield rel, how, reader


def table(before: list[dict] | None, after: list[dict]) -> str:
    def name(f):  # the active index's files under one name, whatever model built them
        return re.sub(r"passages-[0-9a-f]+-[0-9a-f]+", "INDEX", f)
    for r in (before or []) + after:
        r["file"] = name(r["file"])
    key = lambda r: (r["file"], r["damage"], r["reader"])  # noqa: E731
    b = {key(r): r for r in (before or [])}
    head = "| file | damage | reader | " + ("before | " if before is not None else "") + "after | after: message |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in after:
        cells = [r["file"], r["damage"], r["reader"]]
        if before is not None:
            o = b.get(key(r))
            cells.append(o["outcome"] + (f" ({o['message'][:60]})" if o and o["outcome"] == "TRACEBACK" else "")
                         if o else "-")
        cells.append(r["outcome"] + (" (touched " + ", ".join(r["touched"]) + ")" if r["touched"] else ""))
        cells.append(r["message"].replace("|", "/"))
        lines.append("| " + " | ".join(cells) + " |")
    counts = {}
    for r in after:
        counts[r["outcome"]] = counts.get(r["outcome"], 0) + 1
    summary = "after: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    if before is not None:
        bc = {}
        for r in before:
            bc[r["outcome"]] = bc.get(r["outcome"], 0) + 1
        summary = "before: " + ", ".join(f"{k} {v}" for k, v in sorted(bc.items())) + "; " + summary
    return "\n".join(lines) + f"\n\n{len(after)} cases; {summary}\n"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=Path, help="a complete pipeline's data folder (never written)")
    p.add_argument("--code", type=Path, default=ROOT, help="checkout whose stages are run")
    p.add_argument("--work", type=Path, default=None, help="scratch folder (default: beside --data-dir)")
    p.add_argument("--readers", default=",".join(READERS), help=f"comma-separated, of {', '.join(READERS)}")
    p.add_argument("--damages", default=",".join(DAMAGES), help=f"comma-separated, of {', '.join(DAMAGES)}")
    p.add_argument("--only", default=None, help="glob: only files matching it (relative to --data-dir)")
    p.add_argument("--timeout", type=int, default=300, help="seconds per run")
    p.add_argument("--json", type=Path, default=None, help="write the results here")
    p.add_argument("--table", type=Path, nargs="+", default=None, metavar="JSON",
                   help="print the table of one results file, or of BEFORE AFTER")
    args = p.parse_args()
    if args.table:
        runs = [json.loads(f.read_text()) for f in args.table]
        print(table(runs[0] if len(runs) > 1 else None, runs[-1]))
        return
    if args.data_dir is None or not (args.data_dir / "active_index.json").exists():
        p.error("--data-dir must be a complete pipeline's data folder (s00-s10 run)")
    data = args.data_dir.resolve()
    work = (args.work or data.parent / f"{data.name}-damage").resolve()
    work.mkdir(parents=True, exist_ok=True)
    todo = list(cases(data, args.readers.split(","), args.damages.split(","), args.only))
    print(f"{len(todo)} cases", file=sys.stderr)
    results = []
    for i, (rel, how, reader) in enumerate(todo, 1):
        r = run_case(args.code.resolve(), data, work, rel, how, reader, args.timeout)
        results.append(r)
        print(f"[{i}/{len(todo)}] {rel} {how} {reader}: {r['outcome']} {r['message'][:120]} ({r['seconds']} s)",
              file=sys.stderr, flush=True)
        if args.json:
            args.json.write_text(json.dumps(results, indent=1))
    print(table(None, results))


if __name__ == "__main__":
    main()
