"""Datasets in the BEIR layout, and TREC run files.

    DIR/corpus.jsonl     {"_id": ..., "title": ..., "text": ...} per line
    DIR/queries.jsonl    {"_id": ..., "text": ...} per line
    DIR/qrels/test.tsv   query-id <tab> corpus-id <tab> score, after a header line
    run files            qid Q0 docid rank score tag (TREC), one line per retrieved document

`prepare` turns such a folder into a data folder of the pipeline's own files (queries.parquet,
passages.parquet, the token tables with the MAIN vocabulary, vocab.pkl; the word table stays the main one) under the
main data dir, data/external/beir-<name>-<hash>/, which s09 can search (`--data-dir` that folder)
and s10 evaluates. Every document keeps its own string id (passages.parquet's `doc_id`; never
merged with another, even with the same text) and gets an int64 passage id derived from it;
queries keep theirs (queries.parquet's `qid`), with the graded judgments in `grades`.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .artifacts import (BadSetting, BadSource, atomic_path, mark_prepared, prepared_for, require, tmp_path,
                        write_manifest)
from .stages import script
from .text import normalize

QRELS = Path("qrels") / "test.tsv"
FILES = ("corpus.jsonl", "queries.jsonl", str(QRELS))
RUN_DEPTH = 100  # documents per query in the run files we write, and the rerank setting's candidates
FORMAT = 1       # bump when the prepared folder's layout changes: older ones are prepared again
PREPARER = script("s10")  # s10 --beir prepares the folder: its files' manifests name s10

PASSAGE_SCHEMA = pa.schema([("passage_id", pa.int64()), ("doc_id", pa.string()), ("title", pa.string()),
                            ("text", pa.string())])
QUERY_SCHEMA = pa.schema([
    ("split", pa.string()), ("query_id", pa.int64()), ("query", pa.string()),
    ("query_type", pa.string()), ("answers", pa.list_(pa.string())),
    ("passage_ids", pa.list_(pa.int64())), ("is_selected", pa.list_(pa.int8())),
    ("qid", pa.string()), ("grades", pa.list_(pa.int8())),
])


def int_id(s: str) -> int:
    """A stable non-negative 63-bit id for a string id (blake2b)."""
    return int.from_bytes(hashlib.blake2b(s.encode("utf-8"), digest_size=8).digest(), "little") >> 1


def int_ids(strings: list[str], what: str) -> np.ndarray:
    ids = np.fromiter((int_id(s) for s in strings), dtype=np.int64, count=len(strings))
    if len(np.unique(ids)) != len(ids):
        u, inv, cnt = np.unique(ids, return_inverse=True, return_counts=True)
        clash = [s for s, i in zip(strings, inv) if cnt[i] > 1][:2]
        raise BadSource(f"two {what} ids hash to the same 63-bit id ({clash[0]!r} and {clash[1]!r}): "
                        f"rename one of them")
    return ids


# ---------------------------------------------------------------- reading
def _lines(path: Path):
    path = Path(path)
    if not path.is_file():
        raise BadSource(f"{path} not found: a BEIR folder holds corpus.jsonl, queries.jsonl and qrels/test.tsv")
    try:
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if line.strip():
                    yield n, line
    except UnicodeDecodeError as e:
        raise BadSource(f"{path} is not UTF-8 text ({e.reason} at byte {e.start})")


def _records(path: Path, fields: tuple[str, ...]):
    for n, line in _lines(path):
        try:
            r = json.loads(line)
        except json.JSONDecodeError as e:
            raise BadSource(f"{path} line {n} is not JSON ({e.msg}): fix or re-download the file")
        if not isinstance(r, dict) or "_id" not in r:
            raise BadSource(f"{path} line {n} has no \"_id\": each line must be a JSON object with {', '.join(fields)}")
        vals = [str(r["_id"])]
        for k in fields[1:]:
            v = r.get(k, "")
            if v is None:
                v = ""
            if not isinstance(v, str):
                raise BadSource(f"{path} line {n}: \"{k}\" is a {type(v).__name__}, not a string")
            vals.append(v)
        yield n, vals


def read_corpus(path: Path) -> list[tuple[str, str, str]]:
    """(doc id, title, text) per document, in file order; a repeated _id is refused."""
    out, seen = [], set()
    for n, (i, title, text) in _records(path, ("_id", "title", "text")):
        if i in seen:
            raise BadSource(f"{path} line {n}: document id {i!r} appears twice")
        seen.add(i)
        out.append((i, title, text))
    if not out:
        raise BadSource(f"{path} holds no documents")
    return out


def read_queries(path: Path) -> dict[str, str]:
    out = {}
    for n, (i, text) in _records(path, ("_id", "text")):
        if i in out:
            raise BadSource(f"{path} line {n}: query id {i!r} appears twice")
        out[i] = text
    if not out:
        raise BadSource(f"{path} holds no queries")
    return out


def _int(x: str) -> int | None:
    try:
        return int(x)
    except ValueError:
        try:
            f = float(x)
        except ValueError:
            return None
        return int(f) if f.is_integer() else None


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    """query id -> {doc id: grade}. The header line (query-id corpus-id score) is skipped; a TREC
    qrels line (qid 0 docid grade) is read too."""
    out: dict[str, dict[str, int]] = {}
    for n, line in _lines(path):
        f = line.split()
        if len(f) == 4:  # TREC qrels: qid iteration docid grade
            f = [f[0], f[2], f[3]]
        g = _int(f[2]) if len(f) == 3 else None
        if g is None:
            if n == 1 and len(f) == 3:
                continue  # the header
            raise BadSource(f"{path} line {n} is not 'query-id <tab> corpus-id <tab> score' "
                            f"(an integer score): {line.strip()[:100]!r}")
        out.setdefault(f[0], {})[f[1]] = g
    if not out:
        raise BadSource(f"{path} holds no judgments")
    return out


def read_run(path: Path) -> dict[str, list[tuple[str, float]]]:
    """A TREC run file: query id -> [(doc id, score)], best first (by the rank column; ties in file
    order). A document listed twice for a query keeps its first line."""
    rows: dict[str, list] = {}
    for n, line in _lines(path):
        f = line.split()
        try:
            if len(f) != 6:
                raise ValueError
            rank, score = int(f[3]), float(f[4])
        except ValueError:
            raise BadSource(f"{path} line {n} is not a TREC run line 'qid Q0 docid rank score tag': "
                            f"{line.strip()[:100]!r}")
        rows.setdefault(f[0], []).append((rank, n, f[2], score))
    if not rows:
        raise BadSource(f"{path} holds no run lines")
    out = {}
    for q, r in rows.items():
        seen, docs = set(), []
        for _, _, d, s in sorted(r):
            if d not in seen:
                seen.add(d)
                docs.append((d, s))
        out[q] = docs
    return out


def write_run(path: Path, run: dict[str, list[tuple[str, float]]], tag: str):
    """Write a TREC run file (qid Q0 docid rank score tag), each query's documents in the given order."""
    tag = "".join(c if c.isalnum() or c in "-_.+" else "_" for c in tag) or "run"
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        for q, docs in run.items():
            for r, (d, s) in enumerate(docs, 1):
                f.write(f"{q} Q0 {d} {r} {float(s):.6f} {tag}\n")
    return path


def ranking(qids: list[str], ids, scores, to_doc, k: int = RUN_DEPTH, keep=None) -> dict[str, list[tuple[str, float]]]:
    """Our rankings (rows of passage ids and scores, best first) as a run: query id -> [(doc id,
    score)], the top k, padding (non-finite scores) and repeats dropped; keep(score) filters more."""
    out = {}
    for q, row, sc in zip(qids, ids, scores):
        seen, docs = set(), []
        for p, s in zip(row, sc):
            s = float(s)
            if not np.isfinite(s) or (keep is not None and not keep(s)) or p in seen:
                continue
            seen.add(p)
            docs.append((to_doc(p), s))
            if len(docs) == k:
                break
        out[q] = docs
    return out


def ranx_run(run: dict[str, list[tuple[str, float]]]) -> dict[str, dict[str, float]]:
    """A run for common.metrics.evaluate that follows its order exactly: scores from ranks (equal
    scores, e.g. two copies of one text, would otherwise be ordered arbitrarily by ranx)."""
    return {q: {d: float(len(docs) - r) for r, (d, _) in enumerate(docs)} for q, docs in run.items()}


# ---------------------------------------------------------------- prepare
def check_dir(beir_dir) -> Path:
    d = Path(beir_dir)
    if not d.is_dir():
        raise BadSetting(f"--beir {d} is not a folder: give one in the BEIR layout (corpus.jsonl, queries.jsonl, qrels/test.tsv)")
    for f in FILES:
        if not (d / f).is_file():
            raise BadSource(f"{d / f} not found: a BEIR folder holds corpus.jsonl, queries.jsonl and qrels/test.tsv")
    return d


def folder_for(beir_dir, main_dir) -> Path:
    src = Path(beir_dir).resolve()
    return Path(main_dir) / "external" / f"beir-{src.name}-{hashlib.sha1(str(src).encode()).hexdigest()[:8]}"


def _stat(d: Path) -> dict:
    out = {}
    for f in FILES:
        st = os.stat(d / f)
        out[f] = [st.st_size, st.st_mtime_ns]
    return out


def prepare(beir_dir, main_dir, log=print) -> Path:
    """The BEIR folder as a pipeline data folder under main_dir/external/, prepared once (again when
    its files or the main vocabulary change). Returns that folder."""
    from .bm25 import indexed_texts
    from .vocab import recorded_token_limits, token_limits, tokenize_with_main_vocab
    src = check_dir(beir_dir)
    main_dir = Path(main_dir)
    ext = folder_for(src, main_dir)
    want = {"vocab": require(main_dir / "vocab.pkl")["fingerprint"], "source": str(src.resolve()),
            "files": _stat(src), "format": FORMAT, "limits": recorded_token_limits(main_dir)}
    if prepared_for(ext, want, defaults={"limits": token_limits()}):
        return ext
    ext.mkdir(parents=True, exist_ok=True)
    log(f"preparing {src} under {ext} ...")
    docs = read_corpus(src / "corpus.jsonl")
    queries = read_queries(src / "queries.jsonl")
    qrels = read_qrels(src / QRELS)

    # passages: every document under its own id, in file order; only an empty one is left out
    doc_ids, titles, texts, empty = [], [], [], 0
    for i, title, text in docs:
        title, text = normalize(title).strip(), normalize(text).strip()
        if not title and not text:
            empty += 1
            continue
        doc_ids.append(i)
        titles.append(title)
        texts.append(text)
    pids = int_ids(doc_ids, "document")
    pid_of = dict(zip(doc_ids, pids.tolist()))
    ptab = pa.table({"passage_id": pids, "doc_id": doc_ids, "title": titles, "text": texts}, schema=PASSAGE_SCHEMA)

    # queries: all of them, split "test", with their judged passages and grades
    q_ids = [q for q, t in queries.items() if normalize(t).strip()]
    qints = int_ids(q_ids, "query")
    unjudged_doc, judged_q, unknown_q = 0, 0, len(set(qrels) - set(queries))
    cols = {k: [] for k in QUERY_SCHEMA.names}
    for q, qi in zip(q_ids, qints.tolist()):
        judged = [(pid_of[d], g) for d, g in qrels.get(q, {}).items() if d in pid_of]
        unjudged_doc += sum(1 for d in qrels.get(q, {}) if d not in pid_of)
        judged_q += bool(judged)
        for k, v in (("split", "test"), ("query_id", qi), ("query", normalize(queries[q]).strip()),
                     ("query_type", ""), ("answers", []), ("passage_ids", [p for p, _ in judged]),
                     ("is_selected", [int(g >= 1) for _, g in judged]), ("qid", q),
                     ("grades", [max(-128, min(127, g)) for _, g in judged])):
            cols[k].append(v)
    if not judged_q:
        raise BadSource(f"no query of {src / 'queries.jsonl'} has a judgment in {src / QRELS} on a corpus "
                        f"document: are the ids the same in all three files?")
    stats = {"documents": len(doc_ids), "empty_documents_left_out": empty, "queries": len(q_ids),
             "judged_queries": judged_q, "judgments_on_documents_not_in_corpus": unjudged_doc,
             "judged_query_ids_not_in_queries": unknown_q,
             "duplicate_texts": len(texts) - len(set(zip(titles, texts)))}

    with atomic_path(ext / "queries.parquet") as tmp:
        pq.write_table(pa.table(cols, schema=QUERY_SCHEMA), tmp)
    settings = {"beir": str(src.resolve())}
    qm = write_manifest(ext / "queries.parquet", PREPARER, settings, stats=stats)
    with atomic_path(ext / "passages.parquet") as tmp:
        pq.write_table(ptab, tmp)
    pm = write_manifest(ext / "passages.parquet", PREPARER, settings, inputs={"queries": qm}, stats=stats)
    # the encoder sees what BM25 indexes: title + " " + text
    contents = tmp_path(ext / "contents.parquet")
    pq.write_table(pa.table({"passage_id": pids, "text": indexed_texts(ptab)}), contents)
    try:
        tokenize_with_main_vocab(main_dir, ext, PREPARER, qm, pm, sources={"passages_tok.parquet": contents})
    finally:
        contents.unlink(missing_ok=True)
    mark_prepared(ext, dict(want, stats=stats))
    log(f"  {len(doc_ids):,} documents ({stats['duplicate_texts']:,} with a text another one has, each kept "
        f"under its own id), {len(q_ids):,} queries, {judged_q:,} of them judged")
    return ext


class Dataset:
    """A prepared folder's ids and judgments: string ids for run files, graded qrels for metrics."""

    def __init__(self, ext: Path):
        p = pq.read_table(Path(ext) / "passages.parquet", columns=["passage_id", "doc_id"])
        self.doc_of = dict(zip(p["passage_id"].to_pylist(), p["doc_id"].to_pylist()))
        self.pid_of = {d: i for i, d in self.doc_of.items()}
        q = pq.read_table(Path(ext) / "queries.parquet",
                          columns=["query_id", "qid", "query", "passage_ids", "grades"]).to_pydict()
        keep = [n for n, g in enumerate(q["grades"]) if g]  # judged queries only
        self.qints = np.asarray([q["query_id"][n] for n in keep], dtype=np.int64)
        self.qids = [q["qid"][n] for n in keep]
        self.texts = [q["query"][n] for n in keep]
        self.qrels = {q["qid"][n]: {self.doc_of[p]: int(g) for p, g in zip(q["passage_ids"][n], q["grades"][n])}
                      for n in keep}

    def doc(self, pid) -> str:
        return self.doc_of[int(pid)]

    def candidates(self, run: dict[str, list[tuple[str, float]]], depth: int = RUN_DEPTH):
        """Each judged query's top `depth` of a run file, as passage ids (documents not in the corpus
        dropped), with the run's scores; and how many were dropped."""
        cands, scores, missing = [], [], 0
        for q in self.qids:
            docs = run.get(q, [])[:depth]
            c = [(self.pid_of[d], s) for d, s in docs if d in self.pid_of]
            missing += len(docs) - len(c)
            cands.append([p for p, _ in c])
            scores.append([s for _, s in c])
        return cands, scores, missing
