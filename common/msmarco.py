"""Reading MS MARCO (Hugging Face `microsoft/ms_marco`, or a local copy in its layout) and
combining its splits into two tables: one row per query, and one row per unique passage.

Rows are read in batches and written as they go, so v2.1 (about 10M passages) streams through
in bounded memory. Broken rows are repaired or skipped, counted, and reported; nothing crashes.
"""
from __future__ import annotations

import collections
import glob
import hashlib
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .artifacts import BadSetting, BadSource, atomic_path
from .text import normalize

HUB_REPO = "microsoft/ms_marco"
SPLITS = ("train", "validation", "test")
MAX_PASSAGE_CHARS = 20_000

QUERY_SCHEMA = pa.schema([
    ("split", pa.string()), ("query_id", pa.int64()), ("query", pa.string()),
    ("query_type", pa.string()), ("answers", pa.list_(pa.string())),
    ("passage_ids", pa.list_(pa.int64())), ("is_selected", pa.list_(pa.int8())),
])
PASSAGE_SCHEMA = pa.schema([("passage_id", pa.int64()), ("text", pa.string())])


def passage_id(text: str) -> int:
    """Stable 64-bit id from the (normalised) text: the same text always gets the same id."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little", signed=True)


# ---------------------------------------------------------------- sources
def local_split_files(source: str, config: str, split: str) -> list[str]:
    root = Path(source)
    for d in (root / config, root):
        files = sorted(glob.glob(str(d / f"{split}-*.parquet")))
        if files:
            return files
    return []


def iter_local(source: str, config: str, split: str, batch_size: int):
    """Rows of a local copy laid out as the hub repo: {source}/{config}/{split}-*.parquet."""
    for f in local_split_files(source, config, split):
        pf = _open_parquet(f)
        batches = pf.iter_batches(batch_size=batch_size)
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                break
            except Exception as e:  # a damaged page part-way through
                raise BadSource(f"cannot read {f} ({type(e).__name__}: {str(e)[:200]}): re-download it")
            yield batch.to_pylist()


def _open_parquet(f):
    try:
        return pq.ParquetFile(f)
    except Exception as e:  # a truncated or non-parquet file
        raise BadSource(f"cannot read {f} ({type(e).__name__}: {str(e)[:200]}): re-download it")


def iter_hub(repo: str, config: str, split: str, batch_size: int):
    """Rows from the Hugging Face Hub through `datasets` (downloads once, then cached)."""
    import datasets
    try:
        ds = datasets.load_dataset(repo, config, split=split)
    except ValueError as e:
        if "Unknown split" in str(e) or "split" in str(e).lower():
            return
        raise
    except Exception as e:
        raise BadSource(f"could not load {repo} ({config}, {split}) from the Hugging Face Hub: "
                        f"{type(e).__name__}: {str(e).splitlines()[0][:200]}. "
                        f"Offline? Pass --source DIR with a local copy ({config}/{split}-*.parquet)")
    for batch in ds.iter(batch_size=batch_size):
        keys = list(batch)
        yield [dict(zip(keys, vals)) for vals in zip(*(batch[k] for k in keys))]


# ---------------------------------------------------------------- row repair
def _clean_str(x) -> str | None:
    if x is None:
        return None
    if isinstance(x, (bytes, bytearray, memoryview)):
        x = bytes(x)
        try:
            x = x.decode("utf-8")
        except UnicodeDecodeError:  # web text that is not UTF-8 is nearly always Windows-1252
            x = x.decode("cp1252", errors="replace")
    if not isinstance(x, str):
        return None
    if not x.isascii():
        # lone surrogates and the like cannot be written to Parquet
        x = x.encode("utf-8", errors="replace").decode("utf-8")
    return x


def _as_list(x) -> list | None:
    """A list from a list-like field (list, tuple, numpy or Arrow array); None for anything else."""
    if isinstance(x, (list, tuple)):
        return list(x)
    if isinstance(x, np.ndarray):
        return x.tolist() if x.ndim == 1 else None
    if isinstance(x, (pa.Array, pa.ChunkedArray)):
        return x.to_pylist()
    return None


def _as_id(x) -> int | None:
    """An int64 query id from an int (or an integral float, or a numeric string); None otherwise."""
    if isinstance(x, (bool, np.bool_)) or x is None:
        return None
    try:
        if isinstance(x, (float, np.floating)):
            if not np.isfinite(x) or x != int(x):
                return None
        if isinstance(x, (str, bytes)):
            x = x.strip()
        v = int(x)
    except (TypeError, ValueError, OverflowError):
        return None
    return v if -2**63 <= v < 2**63 else None


def _as_flag(x) -> int | None:
    """is_selected as 0/1; None when it is not a number."""
    if isinstance(x, (bool, np.bool_)):
        return int(x)
    try:
        if isinstance(x, (float, np.floating)) and not np.isfinite(x):
            return None
        return 1 if int(x) == 1 else 0
    except (TypeError, ValueError, OverflowError):
        return None


def parse_row(row, counts: collections.Counter):
    """Return (query_id, query, query_type, answers, [(text, selected)]) or None to skip the row.
    Every repair and every skip is counted in `counts` under a name the s00 report prints."""
    if not isinstance(row, dict):
        counts["not_a_record"] += 1
        return None
    qid = _as_id(row.get("query_id"))
    if qid is None:
        counts["missing_query_id"] += 1
        return None
    query = _clean_str(row.get("query"))
    if query is None or not query.strip():
        counts["empty_query"] += 1
        return None
    if len(query) > MAX_PASSAGE_CHARS:
        counts["long_query_truncated"] += 1
        query = query[:MAX_PASSAGE_CHARS]
    fixed = normalize(query)
    if fixed != query:
        counts["repaired_text"] += 1
    query = fixed.strip()
    if not query:
        counts["empty_query"] += 1
        return None
    qtype = _clean_str(row.get("query_type")) or ""
    answers = _as_list(row.get("answers")) or []
    answers = [a for a in (_clean_str(a) for a in answers) if a]

    p = row.get("passages")
    texts = _as_list(p.get("passage_text")) if isinstance(p, dict) else None
    sel = _as_list(p.get("is_selected")) if isinstance(p, dict) else None
    if p is not None and texts is None and not (isinstance(p, dict) and p.get("passage_text") is None):
        counts["malformed_passages"] += 1
    if not texts:
        counts["no_passages"] += 1
        texts = []
    if sel is None:
        sel = []
    if len(sel) != len(texts):
        counts["mismatched_passage_lists"] += 1
        sel = (sel + [0] * len(texts))[:len(texts)]
    out = []
    for t, s in zip(texts, sel):
        t = _clean_str(t)
        if t is None or not t.strip():
            counts["empty_passage"] += 1
            continue
        if len(t) > MAX_PASSAGE_CHARS:
            counts["long_passage_truncated"] += 1
            t = t[:MAX_PASSAGE_CHARS]
        f = normalize(t).strip()
        if f != t.strip():
            counts["repaired_text"] += 1
        if not f:
            counts["empty_passage"] += 1
            continue
        flag = _as_flag(s)
        if flag is None:
            counts["bad_is_selected"] += 1
            flag = 0
        out.append((f, flag))
    return qid, query, qtype, answers, out


# ---------------------------------------------------------------- combine
def combine(out_queries: Path, out_passages: Path, rows_by_split, batch_rows: int = 20_000,
            progress=None) -> dict:
    """Write the query table and the unique-passage table; return counts for the report."""
    counts = collections.Counter()
    seen_q: set[int] = set()
    seen_p: set[int] = set()
    per_split = collections.Counter()
    with atomic_path(out_queries) as tq, atomic_path(out_passages) as tp:
        qw = pq.ParquetWriter(tq, QUERY_SCHEMA)
        pw = pq.ParquetWriter(tp, PASSAGE_SCHEMA)
        qbuf = {k: [] for k in QUERY_SCHEMA.names}
        pbuf = {"passage_id": [], "text": []}

        def flush(force=False):
            if qbuf["query_id"] and (force or len(qbuf["query_id"]) >= batch_rows):
                qw.write_table(pa.table(qbuf, schema=QUERY_SCHEMA))
                for v in qbuf.values():
                    v.clear()
            if pbuf["passage_id"] and (force or len(pbuf["passage_id"]) >= batch_rows):
                pw.write_table(pa.table(pbuf, schema=PASSAGE_SCHEMA))
                for v in pbuf.values():
                    v.clear()

        for split, rows in rows_by_split:
            for batch in rows:
                for row in batch:
                    counts["rows_read"] += 1
                    parsed = parse_row(row, counts)
                    if parsed is None:
                        continue
                    qid, query, qtype, answers, passages = parsed
                    if qid in seen_q:  # also keeps a query out of two splits
                        counts["duplicate_query_id"] += 1
                        continue
                    seen_q.add(qid)
                    pids, sels = [], []
                    for text, s in passages:
                        pid = passage_id(text)
                        if pid in pids:  # the same text twice in one candidate list
                            counts["duplicate_passage_in_row"] += 1
                            if s:
                                sels[pids.index(pid)] = 1
                            continue
                        pids.append(pid)
                        sels.append(s)
                        if pid not in seen_p:
                            seen_p.add(pid)
                            pbuf["passage_id"].append(pid)
                            pbuf["text"].append(text)
                    for k, v in zip(QUERY_SCHEMA.names, (split, qid, query, qtype, answers, pids, sels)):
                        qbuf[k].append(v)
                    per_split[split] += 1
                    flush()
                if progress is not None:
                    progress.update(len(batch))
        flush(force=True)
        qw.close()
        pw.close()
    counts["queries"] = len(seen_q)
    counts["passages"] = len(seen_p)
    return {"counts": dict(counts), "queries_per_split": dict(per_split)}


def combine_into(d: Path, origin: str, config: str, script: str, reader=None, batch_rows: int = 10_000,
                 progress=None) -> tuple[dict, dict, dict]:
    """s00's work: `origin`'s splits (a local copy, or the Hub with reader=iter_hub) combined into
    d/queries.parquet and d/passages.parquet, their manifests recorded as made by `script`.
    Returns (report, queries manifest, passages manifest)."""
    from .artifacts import write_manifest
    reader = reader or iter_local
    qpath, ppath = Path(d) / "queries.parquet", Path(d) / "passages.parquet"
    splits = ((s, reader(origin, config, s, batch_rows)) for s in SPLITS)
    report = combine(qpath, ppath, splits, progress=progress)
    if report["counts"].get("queries", 0) == 0:
        raise BadSource(f"no usable rows in {origin} ({config}): check the source")
    settings = {"config": config, "source": str(origin)}
    qm = write_manifest(qpath, script, settings, stats=report)
    pm = write_manifest(ppath, script, settings, inputs={"queries": qm}, stats=report)
    return report, qm, pm


def source_rows_estimate(source: str | None, config: str) -> int | None:
    if not source:
        return None
    n = 0
    for s in SPLITS:
        for f in local_split_files(source, config, s):
            n += _open_parquet(f).metadata.num_rows
    return n


def check_source(source: str, config: str):
    if not os.path.isdir(source):
        raise BadSetting(f"--source {source} is not a folder: give a local copy laid out as "
                         f"{HUB_REPO} ({config}/train-*.parquet, ...)")
    if not any(local_split_files(source, config, s) for s in SPLITS):
        raise BadSource(f"no {config}/{{train,validation,test}}-*.parquet under {source}: "
                        f"point --source at a copy laid out as {HUB_REPO}")
