"""The passage index: one interface, one implementation per backend.

    module          owns                                                       imports (within index/)
    graph.py        the Graph interface, BuildJob, HNSW defaults, shard bounds  -
    state.py        progress files (an index's state), the writer lock          -
    vectors.py      the full vectors file, the short index vectors              -
    faiss_graph.py  the faiss backend (the only module importing faiss)          graph, state
    chroma_graph.py the Chroma backend (the only module importing chromadb)      graph, state
    dense.py        Index: graph candidates rescored with the full vectors      graph, vectors
    store.py        the registry: names, backend_of(), open/find/drop, damage,  all of the above
                    the active pointer
    build.py        the build entry point of s05, s08 and s10                   all of the above

Everything answers in rows of data/passages_tok.parquet; Index.ids() turns rows into passage ids.
Nothing here imports a stage script, common.cli (except for argparse types), training or search.
"""
