"""What every ``hwquant`` subcommand shares: the exit codes, a parser whose ``--help`` ends
with examples, and the group of a command's own subcommands. :mod:`hwquant.app.cli` assembles
the command from the subcommand modules; they import this module, not the command, so none of
them depends on another.

Exit codes: 0 success, 2 usage or config error, 1 any other hwquant error (and a failed
exactness check), 130 interrupted.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def parser_with_examples(
    factory: Callable[..., argparse.ArgumentParser], *args: str, examples: list[str], **kwargs: str
) -> argparse.ArgumentParser:
    """A parser made by ``factory`` (``argparse.ArgumentParser`` or a subparsers'
    ``add_parser``) whose ``--help`` ends with ``examples``.

    >>> parser = parser_with_examples(argparse.ArgumentParser, prog="x", examples=["x --go"])
    >>> parser.format_help().splitlines()[-2:]
    ['examples:', '  x --go']
    """
    epilog = "examples:\n" + "\n".join(f"  {example}" for example in examples)
    return factory(
        *args, epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter, **kwargs
    )


def subcommands(parser: argparse.ArgumentParser) -> argparse._SubParsersAction:
    """The required group of ``parser``'s subcommands, listed under "commands" as COMMAND.

    >>> parser = argparse.ArgumentParser(prog="x")
    >>> _ = subcommands(parser).add_parser("go")
    >>> parser.format_usage().strip()
    'usage: x [-h] COMMAND ...'
    """
    return parser.add_subparsers(title="commands", required=True, metavar="COMMAND")
