"""Scale benchmarks of wfe alone (issue 6): a large backlog, several host processes on
one PostgreSQL, and the memory of a host holding many waiting workflows.

Each module runs as ``python -m benchmarks.scale.<name> --db URL``, reports progress on
stderr and prints one JSON object as the last line of stdout; it exits 1 (with the
reason on stderr) when a workflow is lost or fails, a host dies, or a wait times out::

    PG=postgresql://postgres@127.0.0.1:5432
    .venv/bin/python -m benchmarks.scale.backlog --db $PG/wfe_bench_scale      # _p<size> dbs
    .venv/bin/python -m benchmarks.scale.multihost --db $PG/wfe_bench_scale    # _h<hosts> dbs
    .venv/bin/python -m benchmarks.scale.memory --db $PG/wfe_bench_scale_mem   # used as given

Scaled down: ``backlog --sizes 200,2000``, ``multihost --n 400``, ``memory --n 500``.
backlog and multihost drop and create their derived databases (``--keep`` keeps them
afterwards); memory expects the fresh database it is given. ``common`` holds the shared
helpers (databases, host subprocesses, waiting).
"""
