"""Scale benchmarks of wfe alone (issue 6): a large backlog, several host processes on
one PostgreSQL, and the memory of a host holding many waiting workflows.

Each module runs as ``python -m benchmarks.scale.<name> --db URL``, reports progress on
stderr and prints one JSON object as the last line of stdout.
"""
