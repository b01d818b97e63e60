"""The real scripts, s00 to s09, as subprocesses in order, on a small synthetic dataset in the
Hugging Face layout with a tiny GloVe text file."""
import os
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from helpers import ROOT, run  # the `pipeline` fixture (a copy of s00-s10, run once per session) is in conftest.py




def test_every_stage_ends_with_what_it_wrote(pipeline):
    data, out = pipeline
    for stage, r in out.items():
        last = r.stdout.strip().splitlines()[-1]
        assert last.startswith("wrote "), (stage, last)
    assert "coverage" in out["s03"].stdout
    assert "keeping s0" in out["s07"].stdout
    # W&B ran offline by default, without an account or prompt
    assert list((data / "wandb").glob("offline-run-*"))


def test_most_test_queries_find_their_positive(pipeline):
    data, _ = pipeline
    from common.search import Searcher
    q = pq.read_table(data / "queries.parquet").to_pylist()
    test = [r for r in q if r["split"] == "test"]
    s = Searcher(data)
    found = 0
    for r in test:
        pos = {p for p, x in zip(r["passage_ids"], r["is_selected"]) if x}
        found += any(h.passage_id in pos for h in s.search(r["query"], 10))
    assert found / len(test) >= 0.8, f"{found}/{len(test)}"


def test_s10_reports_every_system(pipeline):
    import json
    data, _ = pipeline
    rep = json.loads((data / "reports" / "eval_test.json").read_text())
    names = [r["system"] for r in rep["full_pool"]]
    assert any(n.startswith("BM25") for n in names) and any(n.startswith("GloVe") for n in names)
    assert any(n.startswith("s04") for n in names) and any(n.startswith("hybrid") for n in names)
    for r in rep["full_pool"]:
        assert 0 <= r["mrr@10"] <= r["recall@10"] + 1e-9 <= 1 + 1e-9 and r["recall@10"] <= r["recall@100"] + 1e-9
    assert rep["pool"] == pq.ParquetFile(data / "passages.parquet").metadata.num_rows
    assert (data / "reports" / "eval_test_recall.png").stat().st_size > 1000
    assert json.loads((data / "reports" / "hybrid.json").read_text())["best_mode"] in ("dense", "bm25", "hybrid")


@pytest.mark.parametrize("mode", ["dense", "bm25", "hybrid"])
def test_s09_modes(pipeline, mode):
    data, _ = pipeline
    from common.search import Searcher
    q = [r for r in pq.read_table(data / "queries.parquet").to_pylist() if r["split"] == "test"][:5]
    s = Searcher(data, mode=mode)
    for r in q:
        hits = s.search(r["query"], 5)
        assert len(hits) == 5 and [h.rank for h in hits] == [1, 2, 3, 4, 5]
        assert all(a.score >= b.score for a, b in zip(hits, hits[1:]))


def test_s09_once_and_interactive(pipeline):
    data, _ = pipeline
    q = pq.read_table(data / "queries.parquet").to_pylist()[0]["query"]
    r = run("s09_query_retrieve.py", data, "--query", q, "-k", "3")
    assert r.stdout.count("\n") >= 3 and " 1. " in r.stdout
    # symbols GloVe lacks have no word pieces either
    r = run("s09_query_retrieve.py", data, "-k", "2", input=f"{q}\n\n\u2603 \u2318\nexit\n")
    assert "none of the query's words are in the vocabulary" in r.stdout
    assert "Traceback" not in r.stderr and r.stdout.strip().endswith("bye")
    r = run("s09_query_retrieve.py", data, input="")  # end of input leaves cleanly
    assert r.returncode == 0


def test_s09_answers_without_torch_and_like_the_torch_tower(pipeline):
    """s09's numpy query encoder: no torch import (most of s09's start-up), same answers."""
    data, _ = pipeline
    q = [r["query"] for r in pq.read_table(data / "queries.parquet").to_pylist() if r["split"] == "test"][:20]
    code = ("import runpy, sys\n"
            "sys.argv = ['s09_query_retrieve.py', '--data-dir', sys.argv[1], '--mode', 'dense', '--query', sys.argv[2]]\n"
            "try:\n    runpy.run_path('s09_query_retrieve.py', run_name='__main__')\nexcept SystemExit:\n    pass\n"
            "print('torch imported' if 'torch' in sys.modules else 'no torch')")
    r = subprocess.run([sys.executable, "-c", code, str(data), q[0]], cwd=ROOT, capture_output=True, text=True,
                       env=dict(os.environ, HF_HUB_OFFLINE="1"), timeout=300)
    assert " 1. " in r.stdout and r.stdout.strip().endswith("no torch"), r.stdout + r.stderr
    from common.search import Searcher
    fast = Searcher(data, mode="dense")
    assert fast.encoder == "numpy"
    slow = Searcher(data, mode="dense")
    slow._np_encoder = None  # the torch tower, as for a GRU model
    import torch
    from common.encode import load_model
    slow.device = torch.device("cpu")
    slow.model, _ = load_model(data / slow.active["checkpoint"], slow.vocab.fingerprint, slow.device)
    assert slow.encoder == "torch"
    for text in q:
        a, b = fast.search(text, 5), slow.search(text, 5)
        assert [h.passage_id for h in a] == [h.passage_id for h in b]
        assert all(abs(x.score - y.score) < 1e-4 for x, y in zip(a, b))


def test_dense_search_rescores_bm25s_top_rows_beside_the_graphs(pipeline):
    """s09's dense mode: a passage the graph does not propose still comes back when BM25 lists it
    (retrieval.LEXICAL_CANDIDATES), scored and ordered by the model alone."""
    import numpy as np
    from common.index.graph import Graph
    from common.search import Searcher
    data, _ = pipeline
    text = next(r["query"] for r in pq.read_table(data / "queries.parquet").to_pylist() if r["split"] == "test")
    s = Searcher(data, mode="dense")
    with_graph = s.search(text, 10)

    class NoCandidates(Graph):
        def search(self, vecs, n):
            return [np.zeros(0, np.int64) for _ in vecs]
    s.index.graph = NoCandidates()
    got = s.search(text, 10)
    bm25_rows = s.bm25.search_rows([text], 100)[0][0]
    assert got and {h.passage_id for h in got} <= set(s.index.ids(bm25_rows).tolist())
    v, _ = s.encode([text])
    rows = s.index.full.rows(np.array([h.passage_id for h in got], np.int64))[0]
    want = np.asarray(s.index.vecs[rows], np.float32) @ v[0]
    np.testing.assert_allclose([h.score for h in got], want, atol=1e-5)
    assert [h.score for h in got] == sorted((h.score for h in got), reverse=True)
    assert with_graph[0].score >= got[0].score - 1e-6
    s.close()


def test_missing_input_names_the_script_to_run(tmp_path):
    r = run("s04_train_tower.py", tmp_path, check=False)
    assert r.returncode == 2
    assert "run s02_tkn_ms_marco.py first" in r.stderr and "Traceback" not in r.stderr


def test_chroma_shards_answer_like_the_faiss_index(pipeline):
    """s08 --backend chroma --shards 2: two Chroma HNSW graphs built by two processes, queried as one
    (merged top-k), answer like the default faiss graph."""
    import json
    data, _ = pipeline
    from common.search import Searcher
    before = Searcher(data, mode="dense")
    q = [r for r in pq.read_table(data / "queries.parquet").to_pylist() if r["split"] == "test"][:10]
    ref = [[h.passage_id for h in before.search(r["query"], 5)] for r in q]
    assert json.loads((data / "active_index.json").read_text())["backend"] == "faiss"
    assert before.index.graph.__class__.__name__ == "FaissGraph"
    run("s08_reencode_all.py", data, "--backend", "chroma", "--shards", "2")
    active = json.loads((data / "active_index.json").read_text())
    assert active["shards"] == 2 and active["backend"] == "chroma" and active["total"] == pq.ParquetFile(data / "passages.parquet").metadata.num_rows
    s = Searcher(data, mode="dense")
    assert s.index.count() == active["total"]
    got = [[h.passage_id for h in s.search(r["query"], 5)] for r in q]
    overlap = sum(len(set(a) & set(b)) for a, b in zip(ref, got)) / (5 * len(q))
    assert overlap >= 0.9, overlap
    assert all(h.text for h in s.search(q[0]["query"], 3))
    s.close()
    # a data folder from before the index layer named no backend for Chroma indexes: still loads
    for f in (data / "active_index.json", data / "indexes" / f"{active['name']}.json"):
        st = json.loads(f.read_text())
        st.pop("backend")
        f.write_text(json.dumps(st))
    old = Searcher(data, mode="dense")
    assert [[h.passage_id for h in old.search(r["query"], 5)] for r in q] == got
    old.close()


def test_hybrid_ranks_the_union_of_dense_and_bm25_by_fused_scores(pipeline):
    """s09 hybrid, worked out again by hand from the index's vector file and BM25's own scores:
    the candidates are the union of the dense and BM25 top-200s, ranked by the z-scored fusion."""
    import json

    import numpy as np
    data, _ = pipeline
    from common import retrieval
    from common.search import Searcher
    assert json.loads((data / "active_index.json").read_text())["backend"] == "faiss"
    s = Searcher(data, mode="hybrid")
    q = [r["query"] for r in pq.read_table(data / "queries.parquet").to_pylist() if r["split"] == "test"][:15]
    ids = s.index.row_ids
    for text in q:
        got = s.search(text, 10)
        v, _ = s.encode([text])
        d_rows = s.index.search(v, retrieval.FUSION_DEPTH)[0][0]
        b_rows = s.bm25.search_rows([text], retrieval.FUSION_DEPTH)[0][0]
        cand = np.array(list(dict.fromkeys(d_rows.tolist() + b_rows.tolist())))
        V = np.asarray(s.index.vecs[cand], np.float32)
        bm = s.bm25.scores(text)[cand]
        z = lambda x: (x - x.mean()) / (x.std() if x.std() > 1e-12 else 1.0)
        w_d, w_s = s.weights
        fused = w_d * z(V @ v[0]) + w_s * z(V[:, :s.out_dim] @ v[0][:s.out_dim]) + (1 - w_d - w_s) * z(bm)
        top = np.argsort(-fused, kind="stable")[:10]
        assert [h.passage_id for h in got] == ids[cand[top]].tolist()
        np.testing.assert_allclose([h.score for h in got], fused[top], atol=1e-4)
    s.close()
