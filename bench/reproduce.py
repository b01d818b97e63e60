"""Run the reproduction conditions of bench/reproduction.json (the pipeline on ../shared/msmarco-sample,
its evaluation on ../shared/trec-dl-2019, and the variants of "What helped and what did not") and
check every figure against its expected value and tolerance. A benchmark, not a test (the file
records each condition's seconds; README.md, Reproduction, says how long the whole takes).

    python bench/reproduce.py                         # run every condition in a fresh --data-dir, check
    python bench/reproduce.py --skip-run              # check what is already in --data-dir
    python bench/reproduce.py --conditions s04-lex256 # run some conditions (the default's folder kept)
    python bench/reproduce.py --record                # run, then write the figures as the expected ones
    python bench/reproduce.py --render                # write README.md's reproduction tables from the file
    python bench/reproduce.py --list                  # the conditions and their commands

One line per figure: OK or FAIL, condition, figure, expected, got, difference, tolerance (its name
in the file, where its reason is written). Exit status 1 on any FAIL or missing figure.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from common.stages import BY_KEY, PIPELINE, script  # noqa: E402

SPEC = Path(__file__).with_name("reproduction.json")
README = REPO / "README.md"
SAMPLE = REPO.parent / "shared" / "msmarco-sample"
TREC = REPO.parent / "shared" / "trec-dl-2019"
DATA = Path(tempfile.gettempdir()) / "msmarco-repro" / "data"
MARKERS = {"reproduction": ("<!-- reproduction:begin (bench/reproduce.py --render) -->", "<!-- reproduction:end -->"),
           "helped": ("<!-- helped:begin (bench/reproduce.py --render) -->", "<!-- helped:end -->")}


# ------------------------------------------------------------------ the file
def load(path: Path = SPEC) -> dict:
    return json.loads(Path(path).read_text())


def dump(spec: dict, path: Path = SPEC):
    """JSON with one figure per line, so that a re-recording reads as a short diff."""
    def enc(x, ind):
        pad = " " * ind
        if isinstance(x, dict) and x and not _is_figure(x):
            items = [f'{pad} {json.dumps(k)}: {enc(v, ind + 1).lstrip()}' for k, v in x.items()]
            return pad + "{\n" + ",\n".join(items) + "\n" + pad + "}"
        if isinstance(x, list) and x and any(isinstance(v, (dict, list)) or len(json.dumps(v)) > 60 for v in x):
            return pad + "[\n" + ",\n".join(enc(v, ind + 1) for v in x) + "\n" + pad + "]"
        return pad + json.dumps(x, ensure_ascii=False)
    Path(path).write_text(enc(spec, 0) + "\n")


def _is_figure(x: dict) -> bool:
    return "expected" in x and "key" in x


def conditions(spec: dict, only: list[str] | None = None) -> list[dict]:
    cs = spec["conditions"]
    if only:
        unknown = set(only) - {c["id"] for c in cs}
        if unknown:
            sys.exit(f"unknown condition(s) {sorted(unknown)}: choose from {', '.join(c['id'] for c in cs)}")
        cs = [c for c in cs if c["id"] in only]
    return cs


def expand(spec: dict, cmd: str) -> list[str]:
    """A condition's command -> the commands it stands for (the @pipeline macro: every stage of
    common.stages.PIPELINE in order, each with its pipeline_args)."""
    if cmd == "@pipeline":
        return [f"{s.key} {spec['pipeline_args'].get(s.key, '')}".strip() for s in PIPELINE]
    return [cmd]


def fill(text: str, places: dict) -> str:
    for k, v in places.items():
        text = text.replace("{" + k + "}", str(v))
    return text


def shown(cmd: str) -> str:
    """A command as a user types it: `s04 --distill 0` -> `python s04_train_tower.py --distill 0`."""
    head, *rest = shlex.split(cmd)
    if head == "@dl19-row":
        return f"python {script('s10')} --beir ../shared/trec-dl-2019 --rel-level 2 --checkpoint {rest[0]}"
    return " ".join(["python", script(head)] + [a.replace("{sample}", "../shared/msmarco-sample")
                                                .replace("{trec}", "../shared/trec-dl-2019") for a in rest
                                                if a not in ("--wandb", "disabled")])


# ------------------------------------------------------------------ running
def run_stage(argv: list[str], data: Path) -> float:
    t = time.perf_counter()
    r = subprocess.run([sys.executable, str(REPO / script(argv[0])), "--data-dir", str(data), *argv[1:]], cwd=REPO,
                       capture_output=True, text=True, env=dict(os.environ, HF_HUB_OFFLINE="1"))
    if r.returncode:
        sys.exit(f"{' '.join(argv)} (in {data}) failed:\n{r.stderr[-2000:]}")
    return time.perf_counter() - t


def run_command(cmd: str, data: Path, places: dict) -> float:
    argv = shlex.split(fill(cmd, places))
    if argv[0] != "@dl19-row":
        return run_stage(argv, data)
    ck = argv[1]  # s10 --beir with one checkpoint; the pipeline's own report stays the report
    main = data / "reports" / "trec-dl-2019_full.json"
    files = [main, main.with_suffix(".md")]
    kept = {f: f.read_bytes() for f in files if f.exists()}
    t = run_stage(["s10", "--beir", str(places["trec"]), "--rel-level", "2", "--wandb", "disabled",
                   "--checkpoint", ck], data)
    rep = json.loads(main.read_text())
    for f in files:
        if f in kept:
            f.write_bytes(kept[f])
        else:
            f.unlink(missing_ok=True)
    stem = Path(ck).stem.removesuffix("_model")
    row = next(r for r in rep["systems"] if r["system"] == f"{stem} two-tower")
    (data / "reports" / f"variant_{ck}.json").write_text(json.dumps(row))
    return t


def prepare(cond: dict, places: dict) -> Path:
    """The condition's data dir: a fresh copy of another's stage outputs where it says copy_from."""
    d = Path(fill(cond["data_dir"], places))
    src = cond.get("copy_from")
    if src:
        s = Path(fill(src["data_dir"], places))
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        names = [o for k in src["stages"] for o in BY_KEY[k].outputs] + src.get("also", [])
        for name in names:
            for f in (s / name, s / f"{name}.manifest.json"):
                if f.is_dir():
                    shutil.copytree(f, d / f.name)
                elif f.exists():
                    shutil.copy2(f, d / f.name)
    return d


def run_condition(spec: dict, cond: dict, places: dict) -> dict:
    d = prepare(cond, places)
    d.mkdir(parents=True, exist_ok=True)
    secs = {}
    for c in cond["commands"]:
        for cmd in expand(spec, c):
            secs[cmd] = round(run_command(cmd, d, places), 1)
            print(f"{cond['id']:22s} {cmd[:60]:60s} {secs[cmd]:7.1f} s", flush=True)
    return secs


# ------------------------------------------------------------------ checking
def lookup(doc, key: list):
    """Follow a key path: a string is a dict key, {field: value} picks the row of a list whose field
    is value, {field^: prefix} the row whose field starts with prefix. Returns (value, row)."""
    row = None
    for k in key:
        if isinstance(k, dict):
            (f, want), = k.items()
            pick = (lambda r: str(r.get(f[:-1], "")).startswith(want)) if f.endswith("^") else (lambda r: r.get(f) == want)
            doc = next((r for r in doc if pick(r)), None)
            row = doc
        else:
            doc = doc.get(k) if isinstance(doc, dict) else None
            if isinstance(doc, dict):
                row = doc if "search" in doc else row
        if doc is None:
            return None, row
    return doc, row


def figure_name(spec: dict, f: dict) -> str:
    return f"{f['section']}: {f['row'].replace('**', '')} {f['metric']}"


def got(cond: dict, f: dict, places: dict):
    p = Path(fill(cond["data_dir"], places)) / f["file"]
    if not p.exists():
        return None, None
    doc = json.loads(p.read_text())
    v, row = lookup(doc, f["key"])
    if row is None and isinstance(doc, dict) and "search" in doc:
        row = doc
    return v, row


def values(spec: dict, cond: dict, places: dict) -> dict:
    """{figure name: value or None} of one condition, as found in its data dir."""
    return {figure_name(spec, f): got(cond, f, places)[0] for f in cond["figures"]}


def check(spec: dict, conds: list[dict], places: dict) -> tuple[int, int, dict]:
    """Print one line per figure; returns (figures, failures, {(id, figure index): value})."""
    tol = spec["tolerances"]
    values, bad, n = {}, 0, 0
    rows = []
    for c in conds:
        for i, f in enumerate(c["figures"]):
            v, row = got(c, f, places)
            t = tol[f["tolerance"]]
            n += 1
            note = ""
            if v is None:
                status, diff = "FAIL", None
                note = f"  missing: {f['file']}"
            else:
                values[(c["id"], i)] = v
                diff = v - f["expected"]
                status = "OK" if abs(diff) <= t["value"] + 1e-12 else "FAIL"
                search = (row or {}).get("search")
                if search is not None and search not in t["searches"]:
                    status, note = "FAIL", f"  searched by {search!r}: not a {f['tolerance']!r} figure"
            bad += status == "FAIL"
            rows.append((status, c["id"], figure_name(spec, f), f["expected"], v, diff, t["value"], f["tolerance"], note))
    w = max(len(r[2]) for r in rows) if rows else 10
    wid = max(len(r[1]) for r in rows) if rows else 10
    print(f"{'':4s} {'condition':{wid}s} {'figure':{w}s} {'expected':>8s} {'got':>8s} {'diff':>8s}  tolerance")
    for status, cid, name, exp, v, diff, tv, tn, note in rows:
        g = "-" if v is None else f"{v:.4f}"
        d = "-" if diff is None else f"{diff:+.4f}"
        print(f"{status:4s} {cid:{wid}s} {name:{w}s} {exp:8.4f} {g:>8s} {d:>8s}  {tv:g} ({tn}){note}")
    return n, bad, values


# ------------------------------------------------------------------ README tables
def render(spec: dict) -> dict[str, str]:
    """The README's two tables, from the file: {"reproduction": ..., "helped": ...}."""
    tol = spec["tolerances"]
    default = next(c for c in spec["conditions"] if c["id"] == "default")
    out = ["| command | figure | expected | tolerance |", "|---|---|---:|---|"]
    groups: dict = {}
    for f in default["figures"]:
        groups.setdefault(f["section"], {}).setdefault(f["row"], []).append(f)
    for sec, rows in groups.items():
        s = spec["sections"][sec]
        first_row = next(iter(rows.values()))
        metrics = [f["metric"] for f in first_row]
        first = True
        for row, fs in rows.items():
            cmd = f"{s['command']} ({s['figure']}, {' / '.join(metrics)})" if first else ""
            exp = " / ".join((f"**{f['expected']:.4f}**" if row.startswith("**") and not n else f"{f['expected']:.4f}")
                             for n, f in enumerate(fs))
            tols = " / ".join(dict.fromkeys(f"{tol[f['tolerance']]['value']:g} ({f['tolerance']})" for f in fs))
            same = [f["metric"] for f in fs] == metrics
            label = row if same else f"{row} ({' / '.join(f['metric'] for f in fs)})"
            out.append(f"| {cmd} | {label} | {exp} | {tols} |")
            first = False
    out.append("")
    out.append("Tolerances (`bench/reproduction.json`, where each reason is written in full): "
               + "; ".join(f"**{k}** {t['value']:g}, {t['short']}" for k, t in tol.items()) + ".")
    helped = ["| condition | s04 setting | validation | DL 2019 |", "|---|---|---:|---:|"]
    for c in spec["conditions"]:
        h = c.get("helped")
        if not h:
            continue
        pick = lambda want: next(f for f in c["figures"] if [f["section"], f["row"], f["metric"]] == want)
        v, d = pick(h["validation"])["expected"], pick(h["dl19"])["expected"]
        vs, ds = (f"**{v:.4f}**", f"**{d:.4f}**") if c["id"] == "default" else (f"{v:.4f}", f"{d:.4f}")
        helped.append(f"| `{c['id']}` | {h['setting']} | {vs} | {ds} |")
    return {"reproduction": "\n".join(out), "helped": "\n".join(helped)}


def readme_blocks(text: str) -> dict[str, str | None]:
    """What README.md holds between each pair of markers (None where a marker is missing)."""
    out = {}
    for k, (b, e) in MARKERS.items():
        i, j = text.find(b), text.find(e)
        out[k] = text[i + len(b):j].strip("\n") if 0 <= i < j else None
    return out


def write_readme(spec: dict, path: Path = README) -> bool:
    text = path.read_text()
    new = text
    for k, block in render(spec).items():
        b, e = MARKERS[k]
        i, j = new.find(b), new.find(e)
        if not 0 <= i < j:
            sys.exit(f"{path} has no {b} ... {e} markers")
        new = new[:i + len(b)] + "\n" + block + "\n" + new[j:]
    if new != text:
        path.write_text(new)
    return new != text


# ------------------------------------------------------------------ main
def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=Path, default=DATA, help="the default condition's folder (default %(default)s)")
    p.add_argument("--sample", type=Path, default=SAMPLE)
    p.add_argument("--trec", type=Path, default=TREC)
    p.add_argument("--spec", type=Path, default=SPEC, help="the file of conditions (default %(default)s)")
    p.add_argument("--conditions", default=None, help="comma list of condition ids (default: all)")
    p.add_argument("--skip-run", action="store_true", help="check the figures already in --data-dir")
    p.add_argument("--record", action="store_true", help="write the figures got as the expected ones")
    p.add_argument("--render", action="store_true", help="write README.md's tables from the file, and stop")
    p.add_argument("--list", action="store_true", help="print the conditions and their commands, and stop")
    args = p.parse_args()
    spec = load(args.spec)
    if args.render:
        print(f"{README}: {'rewritten' if write_readme(spec) else 'already up to date'}")
        return
    conds = conditions(spec, args.conditions.split(",") if args.conditions else None)
    if args.list:
        for c in conds:
            print(f"{c['id']}: {c['what']} ({fill(c['data_dir'], {'data': 'DATA'})})")
            for cmd in (x for c_ in c["commands"] for x in expand(spec, c_)):
                print(f"    {shown(cmd)}")
        return
    places = {"data": args.data_dir.absolute(), "sample": args.sample.absolute(), "trec": args.trec.absolute()}
    secs = {}
    if not args.skip_run:
        ids = {c["id"] for c in conds}
        if "default" in ids:
            shutil.rmtree(args.data_dir, ignore_errors=True)
        for c in conds:
            dep = next((x for x in spec["conditions"] if x["id"] == c.get("after")), None)
            if dep and dep["id"] not in ids and not (Path(fill(dep["data_dir"], places)) / "reports").exists():
                sys.exit(f"{c['id']} runs after {dep['id']}: run that condition first (or with it)")
            secs[c["id"]] = run_condition(spec, c, places)
        print()
    n, bad, values = check(spec, conds, places)
    if args.record:
        for c in conds:
            for i, f in enumerate(c["figures"]):
                if (c["id"], i) in values:
                    f["expected"] = values[(c["id"], i)]
                    f.pop("from", None)
            if c["id"] in secs:
                s = secs[c["id"]]
                c["seconds"] = s if c["id"] == "default" else round(sum(s.values()), 1)
        spec["machine"] = f"{os.cpu_count()} cores"
        dump(spec, args.spec)
        print(f"recorded in {args.spec}; run python bench/reproduce.py --render for the README")
    print(f"\n{n - bad} of {n} figures OK, {bad} FAIL")
    sys.exit(1 if bad and not args.record else 0)


if __name__ == "__main__":
    main()
