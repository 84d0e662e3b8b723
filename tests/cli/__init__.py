"""Tests of the `wfe` command line: real `python -m wfe` processes on SQLite and PostgreSQL."""
