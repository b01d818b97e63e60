"""Property-based tests (hypothesis): the MS MARCO row reader and the tokenizer never crash on
malformed input, and every problem they meet is counted."""
import collections

import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common import msmarco
from common.text import normalize, tokenize

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Text as it comes: any unicode (surrogates and control characters included), mojibake, bytes.
texts = st.one_of(
    st.text(max_size=60),
    st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=30),
    st.sampled_from(["donâ€™t", "cafÃ©", "\ud800x", "\x00\x1b", "", "   ", "a" * 30_000, "Ã" * 10]),
    st.binary(max_size=30),
)
scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True),
                    texts)
anything = st.recursive(scalars, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=5), c, max_size=3),
                        max_leaves=8)
passages = st.one_of(
    anything,
    st.fixed_dictionaries({"passage_text": st.one_of(st.none(), texts, st.lists(st.one_of(texts, scalars), max_size=5)),
                           "is_selected": st.one_of(st.none(), scalars, st.lists(scalars, max_size=6))}),
)
rows = st.one_of(
    anything,
    st.fixed_dictionaries({"query_id": st.one_of(scalars, st.integers(0, 50)), "query": st.one_of(texts, scalars),
                           "query_type": st.one_of(texts, scalars), "answers": st.one_of(anything, st.lists(texts)),
                           "passages": passages}),
)


@FAST
@given(rows)
def test_parse_row_never_crashes(row):
    counts = collections.Counter()
    out = msmarco.parse_row(row, counts)
    if out is None:
        assert sum(counts.values()) >= 1  # a skipped row is always counted
        return
    qid, query, qtype, answers, ps = out
    assert isinstance(qid, int) and -2**63 <= qid < 2**63
    assert isinstance(query, str) and query.strip()
    assert isinstance(qtype, str) and all(isinstance(a, str) for a in answers)
    for t, s in ps:
        assert isinstance(t, str) and t.strip() and len(t) <= msmarco.MAX_PASSAGE_CHARS and s in (0, 1)
        t.encode("utf-8")  # writable to Parquet


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.lists(rows, max_size=12))
def test_combine_writes_readable_tables(tmp_path, batch):
    q, p = tmp_path / "q.parquet", tmp_path / "p.parquet"
    rep = msmarco.combine(q, p, [("train", [batch])], batch_rows=3)
    c = rep["counts"]
    assert c.get("rows_read", 0) == len(batch)
    qt, pt = pq.read_table(q), pq.read_table(p)
    assert qt.num_rows == c["queries"] and pt.num_rows == c["passages"]
    assert len(set(qt["query_id"].to_pylist())) == qt.num_rows
    assert len(set(pt["passage_id"].to_pylist())) == pt.num_rows
    for pids, sel in zip(qt["passage_ids"].to_pylist(), qt["is_selected"].to_pylist()):
        assert len(pids) == len(sel) and set(pids) <= set(pt["passage_id"].to_pylist())


@FAST
@given(st.one_of(texts, scalars))
def test_tokenizer_never_crashes(text):
    toks = tokenize(text)
    assert isinstance(toks, list)
    for t in toks:
        assert isinstance(t, str) and t and not any(ch.isspace() for ch in t) and t == t.lower()


@FAST
@given(st.text(max_size=80))
def test_queries_and_passages_tokenize_alike(text):
    """s00 normalises passages and queries before s02 tokenises them, s09 tokenises the raw query:
    both paths must give the same tokens."""
    assert tokenize(normalize(text)) == tokenize(text)


def test_mojibake_repaired_the_same_for_queries_and_passages():
    row = {"query_id": 1, "query": "what donâ€™t cafÃ© owners know", "query_type": "x", "answers": [],
           "passages": {"passage_text": ["Owners donâ€™t know the cafÃ© menu."], "is_selected": [1]}}
    c = collections.Counter()
    _, query, _, _, ps = msmarco.parse_row(row, c)
    assert "don't" in query and "café" in query
    assert "don't" in ps[0][0] and "café" in ps[0][0]
    assert c["repaired_text"] == 2
    assert tokenize("donâ€™t cafÃ©") == tokenize("don't café") == ["do", "n't", "café"]
