"""Training seeds side by side: s04 to s10 (and s10 --beir) re-run with --seed N for each seed, on
copies of one prepared data dir's s00-s03 outputs (and its teacher cache), then the mean and the
spread of each figure. A benchmark, not a test: about 5 minutes a seed on 2 cores.

    python bench/reproduce.py                                    # builds /tmp/msmarco-repro/data
    python bench/seeds.py --from-dir /tmp/msmarco-repro/data --seeds 1,2
    python bench/seeds.py --from-dir /tmp/msmarco-repro/data --seeds 0,1,2 --skip-run   # table only
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import reproduce  # noqa: E402

PREPARED = ["queries.parquet", "passages.parquet", "triplets.parquet", "vocab.pkl", "passages_tok.parquet",
            "queries_tok.parquet", "embeddings.npy"]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--from-dir", type=Path, required=True, help="a data dir with s00-s03 done (seed 0 itself)")
    p.add_argument("--out-dir", type=Path, default=Path("/tmp/msmarco-seeds"))
    p.add_argument("--seeds", default="1,2")
    p.add_argument("--skip-run", action="store_true")
    args = p.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    dirs = {}
    for seed in seeds:
        d = args.from_dir if seed == 0 else args.out_dir / f"seed-{seed}"
        dirs[seed] = d
        if args.skip_run or seed == 0:
            continue
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        for name in PREPARED:
            for f in (name, name + ".manifest.json"):
                shutil.copy2(args.from_dir / f, d / f)
        if (args.from_dir / "teacher").exists():
            shutil.copytree(args.from_dir / "teacher", d / "teacher")
        for cmd in reproduce.PIPELINE:
            if cmd[0] in reproduce.TRAINED:
                cmd = cmd + ["--seed", str(seed)]
            if cmd[0] in reproduce.PREPARING:
                continue
            print(f"seed {seed}: {cmd[0]} {reproduce.run(cmd, d, reproduce.SAMPLE):.1f} s", flush=True)
    figs = {s: reproduce.figures(d) for s, d in dirs.items()}
    keys = [k for k in figs[seeds[0]] if all(figs[s].get(k) is not None for s in seeds)]
    print("\n| figure | " + " | ".join(f"seed {s}" for s in seeds) + " | mean | sd |")
    print("|---|" + "---:|" * (len(seeds) + 2))
    for k in keys:
        v = [figs[s][k] for s in seeds]
        sd = statistics.stdev(v) if len(v) > 1 else 0.0
        print(f"| {k} | " + " | ".join(f"{x:.4f}" for x in v) + f" | {statistics.mean(v):.4f} | {sd:.4f} |")


if __name__ == "__main__":
    main()
