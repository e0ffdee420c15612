"""The front door of the ``hwquant`` command (the console script ``hwquant.cli:main`` and
``python -m hwquant``); the command itself is :mod:`hwquant.app.cli`. This is the top layer
(docs/architecture.md): nothing in the package imports it."""

from hwquant.app.cli import build_parser, main, version

__all__ = ["build_parser", "main", "version"]
