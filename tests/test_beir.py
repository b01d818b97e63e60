"""s10 --beir: a BEIR folder (written here) evaluated on the small synthetic pipeline; the readers'
error messages; run files that reproduce the reported figures."""
import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from common import beir
from common.artifacts import StageError
from helpers import run


# ---------------------------------------------------------------- readers
def test_readers_and_their_errors(tmp_path):
    q = tmp_path / "test.tsv"
    q.write_text("query-id\tcorpus-id\tscore\nq1\td1\t2\nq1\td2\t0\nq2\td3\t1\n")
    assert beir.read_qrels(q) == {"q1": {"d1": 2, "d2": 0}, "q2": {"d3": 1}}
    q.write_text("query-id\tcorpus-id\tscore\nq1\td1\tgood\n")
    with pytest.raises(StageError, match="line 2"):
        beir.read_qrels(q)
    c = tmp_path / "corpus.jsonl"
    c.write_text('{"_id": "a", "title": "T", "text": "x"}\n{"_id": "b", "text": "y"\n')
    with pytest.raises(StageError, match="line 2 is not JSON"):
        beir.read_corpus(c)
    c.write_text('{"_id": "a", "text": "x"}\n{"_id": "a", "text": "y"}\n')
    with pytest.raises(StageError, match="appears twice"):
        beir.read_corpus(c)
    with pytest.raises(StageError, match="not found"):
        beir.read_queries(tmp_path / "nope.jsonl")
    r = tmp_path / "x.trec"
    r.write_text("q1 Q0 b 2 1.5 t\nq1 Q0 a 1 2.0 t\nq2 Q0 c 1 0.3 t\n")
    assert beir.read_run(r) == {"q1": [("a", 2.0), ("b", 1.5)], "q2": [("c", 0.3)]}
    beir.write_run(tmp_path / "y.trec", beir.read_run(r), "my tag")
    assert (tmp_path / "y.trec").read_text().splitlines()[0] == "q1 Q0 a 1 2.000000 my_tag"
    r.write_text("q1 Q0 a one 2.0 t\n")
    with pytest.raises(StageError, match="line 1 is not a TREC run line"):
        beir.read_run(r)


def test_int_ids_are_stable_and_collisions_refused(monkeypatch):
    assert beir.int_id("7187158") == beir.int_id("7187158") >= 0
    ids = beir.int_ids(["a", "b", "c"], "document")
    assert len(set(ids.tolist())) == 3
    monkeypatch.setattr(beir, "int_id", lambda s: 42)
    with pytest.raises(StageError, match="same 63-bit id"):
        beir.int_ids(["a", "b"], "document")


# ---------------------------------------------------------------- s10 --beir end to end
def _ndcg10(ranked, grades):
    """trec_eval's ndcg_cut_10: gain = grade, log2(rank + 1) discount."""
    dcg = sum(grades.get(d, 0) / np.log2(r + 2) for r, d in enumerate(ranked[:10]))
    ideal = sorted((g for g in grades.values() if g > 0), reverse=True)[:10]
    return dcg / sum(g / np.log2(r + 2) for r, g in enumerate(ideal))


def _mrr10(ranked, grades, lvl):
    return next((1 / (r + 1) for r, d in enumerate(ranked[:10]) if grades.get(d, 0) >= lvl), 0.0)


def _read_ranked(path):
    out = {}
    for line in Path(path).read_text().splitlines():
        q, _, d, r, s, _ = line.split()
        out.setdefault(q, []).append((int(r), d))
    return {q: [d for _, d in sorted(v)] for q, v in out.items()}


def _digest(data: Path) -> dict:
    files = [data / "active_index.json", data / "reports" / "hybrid.json"] + sorted((data / "indexes").glob("*"))
    return {str(f): hashlib.sha1(f.read_bytes()).hexdigest() for f in files if f.is_file()}


@pytest.fixture(scope="module")
def beir_dir(pipeline_base, tmp_path_factory):
    """A tiny BEIR folder made from the synthetic pipeline's own test questions and passages: string
    ids, one document with a title, two documents with the same text, graded judgments, a run file."""
    data, _ = pipeline_base
    d = tmp_path_factory.mktemp("beir-tiny")
    passages = pq.read_table(data / "passages.parquet").to_pylist()
    text_of = {p["passage_id"]: p["text"] for p in passages}
    tq = [r for r in pq.read_table(data / "queries.parquet").to_pylist() if r["split"] == "test"][:6]
    docs, queries, qrels, runs = {}, {}, [], []
    for n, r in enumerate(tq):
        pos = next(p for p, x in zip(r["passage_ids"], r["is_selected"]) if x)
        cands = list(dict.fromkeys(r["passage_ids"][:5] + [pos]))
        name = {p: f"D{n}-{k}" for k, p in enumerate(cands)}
        for p in cands:
            docs[name[p]] = text_of[p]
        qid = f"Q-{n}"
        queries[qid] = r["query"]
        pos_id = name[pos]
        others = [name[p] for p in cands if p != pos]
        qrels += [(qid, pos_id, 2), (qid, others[0], 1), (qid, others[1], 0)]
        order = others[:2] + [pos_id] + others[2:]  # the positive third, grade 1 first
        runs += [f"{qid} Q0 {x} {k + 1} {10.0 - k:.2f} fixture" for k, x in enumerate(order)]
    dup_text = "zebra crossing lights flash amber at night"
    docs["dup-a"] = dup_text
    docs["dup-b"] = dup_text  # same text, its own id: both kept
    docs["titled"] = "a passage whose title says what it is about"
    queries["Q-dup"] = "zebra crossing amber lights"
    queries["Q-title"] = "okapiheading"
    queries["Q-unjudged"] = "nothing judged for this one"
    qrels += [("Q-dup", "dup-a", 2), ("Q-dup", "dup-b", 1), ("Q-title", "titled", 2)]
    with open(d / "corpus.jsonl", "w") as f:
        for i, t in docs.items():
            f.write(json.dumps({"_id": i, "title": "okapiheading" if i == "titled" else "", "text": t}) + "\n")
    with open(d / "queries.jsonl", "w") as f:
        for i, t in queries.items():
            f.write(json.dumps({"_id": i, "text": t}) + "\n")
    (d / "qrels").mkdir()
    (d / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{p}\t{g}\n" for q, p, g in qrels))
    (d / "runs").mkdir()
    (d / "runs" / "first.trec").write_text("\n".join(runs) + "\n")
    return d, docs, qrels


def test_s10_beir_reports_run_files_and_string_ids(pipeline, beir_dir):
    data, _ = pipeline
    d, docs, qrels = beir_dir
    before = _digest(data)
    r = run("s10_evaluate.py", data, "--beir", str(d), "--rerank", str(d / "runs" / "first.trec"),
            "--rel-level", "2", "--wandb", "disabled")
    assert r.stdout.strip().splitlines()[-1].startswith("wrote ")
    assert "whole corpus" in r.stdout and "run file order (first.trec)" in r.stdout
    assert _digest(data) == before  # the main index, active_index.json and hybrid.json untouched
    dataset = d.name
    full = json.loads((data / "reports" / f"{dataset}_full.json").read_text())
    rer = json.loads((data / "reports" / f"{dataset}_rerank-first.json").read_text())
    assert (data / "reports" / f"{dataset}_full.md").exists() and (data / "reports" / f"{dataset}_rerank-first.md").exists()
    names = [x["system"] for x in full["systems"]]
    assert names[0].startswith("BM25 (bm25s, k1 0.9 b 0.4") and names[1].startswith("GloVe")
    assert "s04 two-tower" in names and "s07 two-tower" in names and any(n.startswith("hybrid") for n in names)
    assert [x["system"] for x in rer["systems"]][0] == "run file order (first.trec)"
    assert full["queries"] == 8 and full["rel_level"] == 2 and full["corpus"] == len(docs)

    grades = {}
    for q, p, g in qrels:
        grades.setdefault(q, {})[p] = g
    from common.metrics import evaluate
    for rep in (full, rer):
        for row in rep["systems"]:
            f = Path(row["run_file"])
            assert f.parent == data / "reports" / "runs" and f.name == f"{dataset}.{row['slug']}.{rep['setting']}.trec"
            ranked = _read_ranked(f)
            assert set(d for v in ranked.values() for d in v) <= set(docs)  # the corpus's own ids
            assert all(len(v) <= 100 for v in ranked.values())
            # ranx over the written file gives the reported figures
            m = evaluate({q: {x: float(len(v) - k) for k, x in enumerate(v)} for q, v in ranked.items()},
                         grades, rep["metrics"], rel_level=2)
            for k in rep["metrics"]:
                assert m[k] == pytest.approx(row[k], abs=1e-9), (rep["setting"], row["system"], k)
            # and so does a by-hand trec_eval: graded nDCG@10, MRR@10 at grade >= 2
            judged = [q for q in grades if max(grades[q].values()) >= 2]
            nd = np.mean([_ndcg10(ranked.get(q, []), grades[q]) for q in judged])
            mrr = np.mean([_mrr10(ranked.get(q, []), grades[q], 2) for q in judged])
            assert nd == pytest.approx(row["ndcg@10"], abs=1e-9) and mrr == pytest.approx(row["mrr@10"], abs=1e-9)

    # the run file's own order: positive (grade 2) third, a grade-1 document first
    own = rer["systems"][0]
    assert own["mrr@10"] == pytest.approx(6 * (1 / 3) / 8)  # Q-dup and Q-title are not in the run file
    # BM25 over the whole corpus: both copies of the duplicated text, under their own ids
    bm = _read_ranked(data / "reports" / "runs" / f"{dataset}.bm25.full.trec")
    assert set(bm["Q-dup"][:2]) == {"dup-a", "dup-b"}
    assert bm["Q-title"][0] == "titled"  # the title is indexed
    # graded nDCG: grade 2 and grade 1 copies tie, so nDCG@10 of Q-dup is 1 or (1 + 2/log2 3) / (2 + 1/log2 3)
    assert _ndcg10(bm["Q-dup"], grades["Q-dup"]) in (pytest.approx(1.0), pytest.approx((1 + 2 / np.log2(3)) / (2 + 1 / np.log2(3))))

    # the prepared folder: every document under its own id, searchable by s09 with those ids
    ext = Path(full["data_dir"])
    assert ext.parent == data / "external"
    p = pq.read_table(ext / "passages.parquet").to_pydict()
    assert sorted(p["doc_id"]) == sorted(docs) and len(set(p["passage_id"])) == len(docs)
    q = pq.read_table(ext / "queries.parquet").to_pydict()
    assert set(q["split"]) == {"test"} and "Q-unjudged" in q["qid"]
    assert q["grades"][q["qid"].index("Q-dup")] == [2, 1]
    out = run("s09_query_retrieve.py", ext, "--query", "zebra crossing amber", "-k", "2", "--mode", "bm25").stdout
    assert "[dup-a]" in out and "[dup-b]" in out
    out = run("s09_query_retrieve.py", ext, "--query", docs["dup-a"], "-k", "3", "--mode", "hybrid").stdout
    assert " 1. " in out and "[dup-" in out

    # a second run reuses the prepared folder
    said = []
    assert beir.prepare(d, data, said.append) == ext and not said


def test_s10_beir_says_what_is_missing(pipeline, tmp_path):
    data, _ = pipeline
    src = tmp_path / "beir"  # (this test's copy of the pipeline is in tmp_path too)
    src.mkdir()
    r = run("s10_evaluate.py", data, "--beir", str(src), check=False)
    assert r.returncode == 2 and "corpus.jsonl not found" in r.stderr and "Traceback" not in r.stderr
    (src / "corpus.jsonl").write_text('{"_id": "a", "text": "x"}\n')
    (src / "queries.jsonl").write_text('{"_id": "q", "text": "x"}\n')
    (src / "qrels").mkdir()
    (src / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq\ta\t1\n")
    (src / "bad.trec").write_text("q Q0 a\n")
    r = run("s10_evaluate.py", data, "--beir", str(src), "--rerank", str(src / "bad.trec"), check=False)
    assert r.returncode == 2 and "not a TREC run line" in r.stderr and "Traceback" not in r.stderr
