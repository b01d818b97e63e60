"""Re-run the README's reproduction table on ../shared/msmarco-sample and print how far each figure
is from the recorded one (bench/reproduction.json). A benchmark, not a test: about 6 minutes on
2 cores.

    python bench/reproduce.py                    # run everything, compare
    python bench/reproduce.py --record           # run and overwrite the recorded figures
    python bench/reproduce.py --skip-run         # compare what is already in --data-dir

Each row: the command, the figure it gives, the recorded figure, the difference.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO.parent / "shared" / "msmarco-sample"
RECORDED = Path(__file__).with_name("reproduction.json")
TOLERANCE = 0.015  # two runs differed by up to 0.0135 (CPU thread timing, HNSW construction)

PIPELINE = [
    ["s00_combine_data.py", "--source", "{sample}"],
    ["s01_create_triplets.py"],
    ["s02_tkn_ms_marco.py"],
    ["s03_build_embedding_matrix.py"],
    ["s04_train_tower.py", "--wandb", "disabled"],
    ["s05_encode_docs_to_chromadb.py"],
    ["s06_mine_hard_negatives.py"],
    ["s07_train_w_hard_negatives.py", "--wandb", "disabled"],
    ["s08_reencode_all.py"],
    ["s10_evaluate.py", "--wandb", "disabled"],
]
VARIANTS = {  # s04 alone with one setting changed; validation MRR@10 (exact search over the pool)
    "s04 --encoder gru": ["s04_train_tower.py", "--encoder", "gru", "--epochs", "10", "--lr", "1e-3",
                          "--out", "s04_gru.pt", "--wandb", "disabled"],
    "s04 --loss triplet": ["s04_train_tower.py", "--loss", "triplet", "--out", "s04_triplet.pt", "--wandb", "disabled"],
    "s04 --lex-dim 0 (GloVe part only)": ["s04_train_tower.py", "--lex-dim", "0", "--out", "s04_nolex.pt",
                                          "--wandb", "disabled"],
}


def run(cmd, data, sample):
    args = [a.format(sample=sample) for a in cmd]
    t = time.perf_counter()
    r = subprocess.run([sys.executable, str(REPO / args[0]), "--data-dir", str(data), *args[1:]], cwd=REPO,
                       capture_output=True, text=True, env=dict(os.environ, HF_HUB_OFFLINE="1"))
    if r.returncode:
        sys.exit(f"{' '.join(args)} failed:\n{r.stderr[-2000:]}")
    return time.perf_counter() - t


def figures(data: Path) -> dict:
    m = lambda name: json.loads((data / f"{name}.manifest.json").read_text())
    out = {"s04 validation MRR@10": m("s04_model.pt")["stats"]["val"]["mrr@10"],
           "s07 validation MRR@10": m("s07_model.pt")["stats"]["val"]["mrr@10"]}
    rep = json.loads((data / "reports" / "eval_test.json").read_text())
    for r in rep["full_pool"]:
        name = r["system"].split(" (")[0] if r["system"].startswith("hybrid") else r["system"]
        out[f"test MRR@10: {name}"] = r["mrr@10"]
        out[f"test Recall@100: {name}"] = r["recall@100"]
    out["index recall@10 vs exact"] = rep.get("index_recall_at_10")
    for label, cmd in VARIANTS.items():
        p = data / f"{cmd[cmd.index('--out') + 1]}.manifest.json"
        if p.exists():
            out[f"{label}: validation MRR@10"] = json.loads(p.read_text())["stats"]["val"]["mrr@10"]
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=Path, default=Path("/tmp/msmarco-repro/data"))
    p.add_argument("--sample", type=Path, default=SAMPLE)
    p.add_argument("--record", action="store_true", help="write the figures as the new recorded ones")
    p.add_argument("--skip-run", action="store_true")
    args = p.parse_args()
    times = {}
    if not args.skip_run:
        import shutil
        shutil.rmtree(args.data_dir, ignore_errors=True)
        for cmd in PIPELINE:
            times[cmd[0]] = run(cmd, args.data_dir, args.sample)
            print(f"{cmd[0]:34s} {times[cmd[0]]:6.1f} s", flush=True)
        for label, cmd in VARIANTS.items():
            times[label] = run(cmd, args.data_dir, args.sample)
            print(f"{label:34s} {times[label]:6.1f} s", flush=True)
    got = figures(args.data_dir)
    rec = json.loads(RECORDED.read_text())["figures"] if RECORDED.exists() else {}
    print("\n| figure | got | recorded | diff |\n|---|---:|---:|---:|")
    bad = 0
    for k, v in got.items():
        r = rec.get(k)
        d = (v - r) if (v is not None and r is not None) else None
        flag = "" if d is None or abs(d) <= TOLERANCE else "  <-- off"
        bad += bool(flag)
        fmt = lambda x: "-" if x is None else f"{x:.4f}"
        print(f"| {k} | {fmt(v)} | {fmt(r)} | {'-' if d is None else f'{d:+.4f}'} |{flag}")
    if args.record:
        RECORDED.write_text(json.dumps({"figures": got, "seconds": times,
                                        "machine": f"{os.cpu_count()} cores"}, indent=2) + "\n")
        print(f"recorded in {RECORDED}")
    print(f"\n{len(got) - bad} of {len(got)} figures within {TOLERANCE} of the recorded ones")
    sys.exit(1 if bad and not args.record else 0)


if __name__ == "__main__":
    main()
