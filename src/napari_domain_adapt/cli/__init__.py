"""The command line: ``napari-domain-adapt COMMAND``; ``--help`` lists the commands.

Every command is a thin wrapper around the core. Bad input prints one ``error:`` line on
stderr and exits with status 2, having written nothing; outputs are written atomically and
never overwrite an existing file without ``--overwrite``.
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from napari_domain_adapt.core import InputError

from .parser import EXIT_BAD_INPUT, build_parser

__all__ = ["EXIT_BAD_INPUT", "build_parser", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``napari-domain-adapt`` command."""
    args = build_parser().parse_args(argv)
    from . import commands

    try:
        with _warnings_as_lines():
            return getattr(commands, f"run_{args.command}")(args)
    except InputError as error:
        # One line, whatever a library put in the message (scripts grep for "error:").
        print(f"error: {' '.join(str(error).split())}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        state = Path(f"{args.out}.state") if args.command in ("train", "adapt") else None
        if state is not None and state.exists():
            print(
                f"error: interrupted; no model was written; the run's state is in {state}: "
                "rerun the same command with --resume to continue",
                file=sys.stderr,
            )
        else:
            print("error: interrupted; nothing was written", file=sys.stderr)
        return 130


@contextlib.contextmanager
def _warnings_as_lines():
    """Show each warning (ours are UserWarnings) as one ``warning: MESSAGE`` line on stderr,
    not Python's file, line and source."""

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        print(f"warning: {' '.join(str(message).split())}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.filterwarnings("default", category=UserWarning)
        warnings.showwarning = show
        yield
