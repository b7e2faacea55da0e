"""How every subcommand reports a user's mistake: one clear line on stderr and exit status 2."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any, NoReturn

Handler = Callable[[argparse.Namespace, Any], int]


def one_line_errors(parser: argparse.ArgumentParser) -> None:
    """argparse errors as one clear line (plus a pointer to --help), exit status 2."""

    def error(message: str) -> NoReturn:
        print(f"{parser.prog}: error: {message} (see {parser.prog} --help)", file=sys.stderr)
        raise SystemExit(2)

    parser.error = error  # type: ignore[method-assign]  # argparse has no hook for the error line: replace it on this parser only


def guarded(command: str, fn: Handler, errors: Callable[[], tuple[type[Exception], ...]], *, one_line: bool = False) -> Handler:
    """``fn`` with the expected failures (``errors()``, looked up when one happens so that a
    command's heavy modules load only when it runs, and unreadable files) turned into
    ``riskctl COMMAND: error: ...`` and exit status 2. ``one_line`` folds multi-line messages
    (pydantic's) onto one line."""

    def handler(args: argparse.Namespace, settings: Any) -> int:
        try:
            return fn(args, settings)
        except OSError as exc:
            where = f"{exc.filename}: " if exc.filename else ""
            print(f"riskctl {command}: error: {where}{exc.strerror or exc}", file=sys.stderr)
        except Exception as exc:
            if not isinstance(exc, errors()):
                raise
            message = " ".join(str(exc).split()) if one_line else str(exc)
            print(f"riskctl {command}: error: {message}", file=sys.stderr)
        return 2

    return handler
