"""The pieces of ``benchmarks/run.py``: the DBOS venv, databases, subprocesses, report."""
