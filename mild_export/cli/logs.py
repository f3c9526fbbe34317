"""One logging set-up and one way to end for every command."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from typing import NoReturn

from tqdm.contrib.logging import logging_redirect_tqdm

log = logging.getLogger("mild")


class _OneLineErrors(argparse.ArgumentParser):
    """argparse's parser, its errors one line like every other bad input's: the usage block argparse
    prints first buried the line naming the option, and `--help` shows the usage anyway."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def command_parser(prog: str, doc: str) -> argparse.ArgumentParser:
    """A command's parser, described by the first paragraph of its module docstring."""
    return _OneLineErrors(prog=prog, description=doc.split("\n\n")[0])


def setup_logging(prog: str) -> None:
    """mild's messages from INFO up, prefixed by the command; other libraries' from WARNING up, so
    users read our progress, not the ONNX optimizer's notes on each initializer it merges."""
    logging.basicConfig(level=logging.WARNING, format=f"{prog}: %(message)s")
    logging.getLogger("mild").setLevel(logging.INFO)


def run_command(
    prog: str,
    parse_args: Callable[[list[str] | None], argparse.Namespace],
    run: Callable[[argparse.Namespace], object],
    argv: list[str] | None,
    failures: tuple[tuple[type[Exception], int], ...] = (),
) -> int:
    """A command's `main`: logging set up, arguments parsed, `run`. Every input check raises
    ValueError naming the input and the fix: one line and exit code 2, no traceback. `failures`
    adds (error type, exit code) pairs for a command's own failures, reported the same way. Ctrl-C
    ends with one line too (exit code 130, the shell's): its message, where a command gives one,
    says what was kept and how to go on."""
    setup_logging(prog)
    args = parse_args(argv)
    try:
        with logging_redirect_tqdm():  # log lines above a progress bar, not through it
            run(args)
    except ValueError as err:
        log.error("error: %s", err)
        return 2
    except KeyboardInterrupt as err:
        log.error("interrupted%s", f": {err}" if str(err) else "")
        return 130
    except tuple(kind for kind, _ in failures) as err:
        log.error("error: %s", err)
        return next(code for kind, code in failures if isinstance(err, kind))
    return 0
