"""bench/run_bench.py's topic words: `first` is the N/2 words from rank 2,000 (what every earlier
figure used); `spread` is as many spread over every rank from 2,000, the kind of words the
N = 1,000,000 set asks about, so a small N reproduces its difficulty (README, v2.1 scale)."""
from __future__ import annotations

from helpers import bench_tool


def test_first_and_spread_topic_words():
    rb = bench_tool("run_bench")
    words = [f"w{i}" for i in range(400_000)]
    first = rb.topic_words(words, 100_000, "first")
    assert first == words[2_000:52_000]
    spread = rb.topic_words(words, 100_000, "spread")
    assert len(spread) == 50_000 == len(set(spread))
    ranks = [int(w[1:]) for w in spread]
    assert ranks[0] == 2_000 and ranks == sorted(ranks) and ranks[-1] > 340_000  # down to the rare words
    # at N = 1,000,000 both take every word there is from rank 2,000: the 10M set is already spread
    assert rb.topic_words(words, 1_000_000, "first") == rb.topic_words(words, 1_000_000, "spread") == words[2_000:]
