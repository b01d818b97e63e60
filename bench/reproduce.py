"""Re-run the README's reproduction table on ../shared/msmarco-sample (and its evaluation on
../shared/trec-dl-2019) and print how far each figure is from the recorded one
(bench/reproduction.json). A benchmark, not a test: about 15 minutes on 2 cores, plus s03's
once-per-machine teacher word vectors.

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
TREC = REPO.parent / "shared" / "trec-dl-2019"
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
    ["s10_evaluate.py", "--beir", "{trec}", "--rerank", "{trec}/runs/bm25.trec", "--rel-level", "2",
     "--wandb", "disabled"],
]
PREPARING = {"s00_combine_data.py", "s01_create_triplets.py", "s02_tkn_ms_marco.py", "s03_build_embedding_matrix.py"}
TRAINED = {"s04_train_tower.py", "s06_mine_hard_negatives.py", "s07_train_w_hard_negatives.py"}
BEIR_DENSE = ["s10_evaluate.py", "--beir", "{trec}", "--rel-level", "2", "--wandb", "disabled", "--checkpoint"]
VARIANTS = {  # s04 alone with one setting changed: validation MRR@10 (exact search), then DL 2019 through s10
    "s04 --distill 0 (labels only)": ["s04_train_tower.py", "--distill", "0", "--out", "s04_nodistill.pt",
                                      "--wandb", "disabled"],
    "s04 --out-dim 64 --lex-dim 256 (the earlier 64 + 256 layout)": [
        "s04_train_tower.py", "--out-dim", "64", "--lex-dim", "256", "--out", "s04_lex.pt", "--wandb", "disabled"],
    "s04 --loss inbatch (softmax over the batch)": ["s04_train_tower.py", "--loss", "inbatch", "--out", "s04_inbatch.pt",
                                                    "--wandb", "disabled"],
    "s04 --loss inbatch --distill 8": ["s04_train_tower.py", "--loss", "inbatch", "--distill", "8",
                                       "--out", "s04_inbatch_d8.pt", "--wandb", "disabled"],
}

SIBLINGS = {  # s03 and s04 with other settings, in a sibling folder (copies of s00-s02's outputs)
    "GloVe vectors, labels only (--vectors glove, --distill 0)": (
        ["s03_build_embedding_matrix.py", "--vectors", "glove"],
        ["s04_train_tower.py", "--distill", "0", "--wandb", "disabled"]),
    "GloVe vectors with the teacher (--vectors glove)": (
        ["s03_build_embedding_matrix.py", "--vectors", "glove"],
        ["s04_train_tower.py", "--wandb", "disabled"]),
    "previous default (GloVe + 256-d lexical code, 64-d head, labels only, temperature 0.02)": (
        ["s03_build_embedding_matrix.py", "--vectors", "glove"],
        ["s04_train_tower.py", "--distill", "0", "--loss", "inbatch", "--lex-dim", "256", "--out-dim", "64",
         "--temperature", "0.02",
         "--epochs", "30", "--lr", "2e-3", "--lr-emb", "2e-3", "--batch-size", "256", "--wandb", "disabled"]),
}


def run(cmd, data, sample):
    args = [a.format(sample=sample, trec=TREC) for a in cmd]
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
    for setting in ("full", "rerank-bm25"):
        f = data / "reports" / f"trec-dl-2019_{setting}.json"
        if f.exists():
            for r in json.loads(f.read_text())["systems"]:
                name = "hybrid" if r["system"].startswith("hybrid") else r["system"]  # whichever model won
                out[f"DL19 {setting} nDCG@10: {name}"] = r["ndcg@10"]
    for label, cmd in VARIANTS.items():
        p = data / f"{cmd[cmd.index('--out') + 1]}.manifest.json"
        if p.exists():
            out[f"{label}: validation MRR@10"] = json.loads(p.read_text())["stats"]["val"]["mrr@10"]
        f = data / "reports" / f"variant_{cmd[cmd.index('--out') + 1]}.json"
        if f.exists():
            out[f"{label}: DL19 full nDCG@10"] = json.loads(f.read_text())["ndcg@10"]
    for label in SIBLINGS:
        f = sibling_dir(data, label) / "reports" / "variant_s04_model.pt.json"
        if f.exists():
            out[f"{label}: validation MRR@10"] = json.loads((sibling_dir(data, label) / "s04_model.pt.manifest.json")
                                                            .read_text())["stats"]["val"]["mrr@10"]
            out[f"{label}: DL19 full nDCG@10"] = json.loads(f.read_text())["ndcg@10"]
    return out


def sibling_dir(data: Path, label: str) -> Path:
    import hashlib
    return data.parent / f"{data.name}-variant-{hashlib.sha1(label.encode()).hexdigest()[:8]}"


def run_sibling(label, data, sample):
    """s03 and s04 with other settings in a copy of s00-s02's outputs, then DL 2019 (whole corpus)."""
    import shutil
    s03, s04 = SIBLINGS[label]
    d = sibling_dir(data, label)
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    for name in ("queries.parquet", "passages.parquet", "triplets.parquet", "vocab.pkl", "passages_tok.parquet",
                 "queries_tok.parquet"):
        for f in (name, name + ".manifest.json"):
            shutil.copy2(data / f, d / f)
    if (data / "teacher").exists():
        shutil.copytree(data / "teacher", d / "teacher")
    t = run(s03, d, sample) + run(s04, d, sample)
    return t + run_variant(None, d, sample, "s04_model.pt")


def run_variant(cmd, data, sample, ck=None):
    """s04 with one setting changed, then that checkpoint on DL 2019 (whole corpus, its own index)."""
    t = run(cmd, data, sample) if cmd else 0.0
    ck = ck or cmd[cmd.index("--out") + 1]
    main = data / "reports" / "trec-dl-2019_full.json"
    files = [main, main.with_suffix(".md")]
    kept = {f: f.read_bytes() for f in files if f.exists()}  # the pipeline's own report stays the report
    t += run(BEIR_DENSE + [ck], data, sample)
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


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=Path, default=Path("/tmp/msmarco-repro/data"))
    p.add_argument("--sample", type=Path, default=SAMPLE)
    p.add_argument("--record", action="store_true", help="write the figures as the new recorded ones")
    p.add_argument("--skip-run", action="store_true")
    p.add_argument("--variants-only", action="store_true", help="keep --data-dir's pipeline; run the variants")
    args = p.parse_args()
    times = {}
    if not args.skip_run:
        import shutil
        if not args.variants_only:
            shutil.rmtree(args.data_dir, ignore_errors=True)
        for n, cmd in enumerate(PIPELINE if not args.variants_only else []):
            times[f"{n}: {' '.join(cmd[:2])}"] = t = run(cmd, args.data_dir, args.sample)
            print(f"{cmd[0]:34s} {t:6.1f} s", flush=True)
        for label, cmd in VARIANTS.items():
            times[label] = run_variant(cmd, args.data_dir, args.sample)
            print(f"{label:34s} {times[label]:6.1f} s", flush=True)
        for label in SIBLINGS:
            times[label] = run_sibling(label, args.data_dir, args.sample)
            print(f"{label[:34]:34s} {times[label]:6.1f} s", flush=True)
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
        if (args.variants_only or args.skip_run) and RECORDED.exists():
            times = dict(json.loads(RECORDED.read_text()).get("seconds", {}), **times)
        RECORDED.write_text(json.dumps({"figures": got, "seconds": times,
                                        "machine": f"{os.cpu_count()} cores"}, indent=2) + "\n")
        print(f"recorded in {RECORDED}")
    print(f"\n{len(got) - bad} of {len(got)} figures within {TOLERANCE} of the recorded ones")
    sys.exit(1 if bad and not args.record else 0)


if __name__ == "__main__":
    main()
