"""``python -m wfe``: the same program as the ``wfe`` command."""

from wfe.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
