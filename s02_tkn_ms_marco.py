"""Stage 2: tokenise queries and passages with the GloVe vocabulary.

Vocabulary = every GloVe word (`--vocab glove`, the default: 400,002 with GloVe 6B), or only those
the corpus uses (`--vocab corpus`), plus <pad> (0) and <unk> (1), then the teacher's word pieces
(`--pieces teacher`, the default: 27,558, common/wordpiece.py). A word GloVe lacks is split
into those pieces ("sigmet" -> si ##gm ##et); one that cannot be split (a symbol), or any with
`--pieces none`, becomes <unk>: no text is dropped. Writes

    data/vocab.pkl              words, token counts and document frequencies
    data/passages_tok.parquet   passage_id, tokens (list<int32>), in passages.parquet order
    data/queries_tok.parquet    query_id, tokens

    python s02_tkn_ms_marco.py
    # -> wrote data/vocab.pkl (427,560 words), data/passages_tok.parquet (18,531), data/queries_tok.parquet (8,178)
"""
from common import cli, glove, wordpiece
from common.artifacts import atomic_path, require, run_main, write_manifest
from common.vocab import (MAX_PASSAGE_TOKENS, MAX_QUERY_TOKENS, TOKEN_TABLES, CorpusTokenizer,
                          record_token_tables, tokenize_table)


def main():
    p = cli.parser(__doc__)
    p.add_argument("--glove", default=glove.DEFAULT, help="GloVe source whose words define the vocabulary")
    p.add_argument("--vocab", default="glove", choices=["glove", "corpus"],
                   help="glove: every GloVe word; corpus: only the GloVe words the corpus uses")
    p.add_argument("--pieces", default="teacher", choices=["teacher", "none"],
                   help="teacher: split a word GloVe lacks into the teacher's word pieces; none: it is <unk>")
    p.add_argument("--max-passage-tokens", type=cli.positive_int, default=MAX_PASSAGE_TOKENS,
                   help="longer passages are cut here (recorded: the model reads this many)")
    p.add_argument("--max-query-tokens", type=cli.positive_int, default=MAX_QUERY_TOKENS,
                   help="longer questions are cut here (recorded: the model reads this many)")
    p.add_argument("--workers", type=cli.positive_int, default=2, help="tokeniser processes")
    p.add_argument("--batch-rows", type=cli.positive_int, default=20_000)
    args = p.parse_args()
    from tqdm import tqdm
    import pyarrow.parquet as pq

    t = cli.Timer()
    d = args.data_dir
    qm = require(d / "queries.parquet")
    pm = require(d / "passages.parquet")
    pieces = wordpiece.teacher_pieces() if args.pieces == "teacher" else []
    tok = CorpusTokenizer(glove.words(args.glove), workers=args.workers, whole=args.vocab == "glove",
                          pieces=pieces)
    limits = {"max_query_tokens": args.max_query_tokens, "max_passage_tokens": args.max_passage_tokens}
    try:
        outs = {}
        for name, src, id_col, text_col, limit in TOKEN_TABLES:
            n = pq.ParquetFile(d / src).metadata.num_rows
            with tqdm(total=n, desc=f"s02 {name.split('_')[0]}", unit="row", mininterval=1) as bar:
                outs[name] = tokenize_table(d / src, id_col, text_col, d / name, tok, limits[limit],
                                            count_stats=src == "passages.parquet", batch_rows=args.batch_rows,
                                            progress=bar)
    finally:
        tok.close()
    vocab = tok.vocab(glove.describe(args.glove))
    with atomic_path(d / "vocab.pkl") as tmp:
        vocab.save(tmp)
    coverage = 1 - tok.unknown_tokens / max(tok.total_tokens, 1)
    pieces_share = tok.piece_tokens / max(tok.total_tokens, 1)
    stats = {"vocab_size": len(vocab), "passage_tokens": tok.total_tokens, "known_coverage": coverage,
             "piece_tokens": tok.piece_tokens, "pieces": len(pieces)}
    settings = {"glove": vocab.glove_source, "vocab": args.vocab, "pieces": args.pieces}
    vm = write_manifest(d / "vocab.pkl", "s02_tkn_ms_marco.py", settings,
                        inputs={"passages": pm, "queries": qm}, stats=stats, fingerprint=vocab.fingerprint)
    record_token_tables(d, "s02_tkn_ms_marco.py", limits, vm, pm, qm)
    n_tok = tok.total_tokens
    print(f"vocabulary {len(vocab):,} words ({len(pieces):,} of them word pieces); {n_tok:,} passage tokens, "
          f"{coverage:.1%} known ({pieces_share:.2%} as pieces of words GloVe lacks; "
          f"{n_tok / max(t.s, 1e-9):,.0f} tokens/s)")
    cli.done(f"{d / 'vocab.pkl'}, {d / 'passages_tok.parquet'} ({outs['passages_tok.parquet']:,}), "
             f"{d / 'queries_tok.parquet'} ({outs['queries_tok.parquet']:,})", t)


if __name__ == "__main__":
    run_main(main)
