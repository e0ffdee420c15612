"""``python -m hwquant``: the ``hwquant`` command."""

from hwquant.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
