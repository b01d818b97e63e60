"""Training seeds side by side: the default reproduction condition's commands from s04 on (s04 to
s10, and s10 --beir) re-run with --seed N for each seed, on copies of one prepared data dir's s00-s03
outputs (and its teacher cache), then the mean and the spread of each of its figures. A benchmark,
not a test: each seed costs what the default condition's s04-s10 cost (reproduction.json's seconds).

    python bench/reproduce.py --conditions default           # builds the reproduction's data dir
    python bench/seeds.py --from-dir DATA --seeds 1,2
    python bench/seeds.py --from-dir DATA --seeds 0,1,2 --skip-run   # the table only

Seed 0 is --from-dir itself (the stages' default seed).
"""
from __future__ import annotations

import argparse
import shlex
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import reproduce  # noqa: E402
from common.stages import BY_KEY  # noqa: E402

PREPARING = ("s00", "s01", "s02", "s03")  # copied, not re-run
SEEDED = ("s04", "s06", "s07")            # the stages whose --seed changes what they make


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--from-dir", type=Path, required=True, help="a data dir with s00-s03 done (seed 0 itself)")
    p.add_argument("--out-dir", type=Path, default=Path(tempfile.gettempdir()) / "msmarco-seeds",
                   help="where seed-N/ folders go (default %(default)s)")
    p.add_argument("--seeds", default="1,2")
    p.add_argument("--sample", type=Path, default=reproduce.SAMPLE)
    p.add_argument("--trec", type=Path, default=reproduce.TREC)
    p.add_argument("--skip-run", action="store_true")
    args = p.parse_args()
    spec = reproduce.load()
    cond = reproduce.conditions(spec, ["default"])[0]
    cmds = [c for x in cond["commands"] for c in reproduce.expand(spec, x) if shlex.split(c)[0] not in PREPARING]
    seeds = [int(s) for s in args.seeds.split(",")]
    dirs = {}
    for seed in seeds:
        d = args.from_dir if seed == 0 else args.out_dir / f"seed-{seed}"
        dirs[seed] = d
        if args.skip_run or seed == 0:
            continue
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        for name in [o for k in PREPARING for o in BY_KEY[k].outputs] + ["teacher"]:
            for f in (args.from_dir / name, args.from_dir / f"{name}.manifest.json"):
                if f.is_dir():
                    shutil.copytree(f, d / f.name)
                elif f.exists():
                    shutil.copy2(f, d / f.name)
        places = {"data": d.absolute(), "sample": args.sample.absolute(), "trec": args.trec.absolute()}
        for cmd in cmds:
            if shlex.split(cmd)[0] in SEEDED:
                cmd += f" --seed {seed}"
            print(f"seed {seed}: {cmd} {reproduce.run_command(cmd, d, places):.1f} s", flush=True)
    figs = {s: reproduce.values(spec, dict(cond, data_dir=str(d.absolute())), {}) for s, d in dirs.items()}
    keys = [k for k in figs[seeds[0]] if all(figs[s].get(k) is not None for s in seeds)]
    print("\n| figure | " + " | ".join(f"seed {s}" for s in seeds) + " | mean | sd |")
    print("|---|" + "---:|" * (len(seeds) + 2))
    for k in keys:
        v = [figs[s][k] for s in seeds]
        sd = statistics.stdev(v) if len(v) > 1 else 0.0
        print(f"| {k} | " + " | ".join(f"{x:.4f}" for x in v) + f" | {statistics.mean(v):.4f} | {sd:.4f} |")


if __name__ == "__main__":
    main()
