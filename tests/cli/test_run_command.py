"""Every command ends the same way: 0, or one error line and its exit code, never a traceback for
bad input; an unexpected error still raises, with its traceback."""

from __future__ import annotations

import argparse
import importlib
import logging

import pytest

from mild_export.cli.logs import run_command
from mild_export.engine.trt_shim import TensorRTError


def parse(argv):
    p = argparse.ArgumentParser(prog="mild-test")
    p.add_argument(
        "--fail", choices=["none", "input", "tensorrt", "bug", "ctrl-c", "ctrl-c-said"], default="none"
    )
    return p.parse_args(argv)


def run(args):
    if args.fail == "input":
        raise ValueError("--fail input: give --fail none")
    if args.fail == "tensorrt":
        raise TensorRTError("the engine did not build")
    if args.fail == "bug":
        raise KeyError("not an input error")
    if args.fail == "ctrl-c":
        raise KeyboardInterrupt
    if args.fail == "ctrl-c-said":
        raise KeyboardInterrupt("at step 5; continue with --resume")


FAILURES = ((TensorRTError, 1),)


@pytest.mark.parametrize(
    "fail, code, line",
    [
        ("none", 0, None),
        ("input", 2, "error: --fail input: give --fail none"),
        ("tensorrt", 1, "error: the engine did not build"),
        ("ctrl-c", 130, "interrupted"),
        ("ctrl-c-said", 130, "interrupted: at step 5; continue with --resume"),
    ],
)
def test_exit_codes_and_one_line(caplog, fail, code, line):
    caplog.set_level(logging.INFO, logger="mild")
    assert run_command("mild-test", parse, run, ["--fail", fail], failures=FAILURES) == code
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == ([line] if line else [])


def test_a_failure_a_command_does_not_name_still_raises():
    with pytest.raises(TensorRTError, match=r"^the engine did not build$"):
        run_command("mild-test", parse, run, ["--fail", "tensorrt"])
    with pytest.raises(KeyError, match="not an input error"):
        run_command("mild-test", parse, run, ["--fail", "bug"], failures=FAILURES)


@pytest.mark.parametrize(
    "command, argv, message",
    [
        ("erase", ["--out", "x", "--no-such-option"], "unrecognized arguments: --no-such-option"),
        ("export", ["--out", "x", "--fp16", "--bf16"], "argument --bf16: not allowed with argument --fp16"),
        ("bench", ["--steps", "x"], "argument --steps: invalid int value: 'x'"),
        ("merge", ["--out", "x"], "the following arguments are required: --checkpoint"),
        ("synth", ["--count", "0", "--out", "x"], "--count must be positive, got 0"),
        ("train", ["--data", "d"], "the following arguments are required: --out"),
    ],
)
def test_a_bad_command_line_is_one_line(capsys, command, argv, message):
    """argparse's own errors too: its usage block came first and buried the line."""
    parse_args = importlib.import_module(f"mild_export.cli.{command}").parse_args
    with pytest.raises(SystemExit) as exit_:
        parse_args(argv)
    assert exit_.value.code == 2
    prog = f"mild-{command}"
    assert capsys.readouterr().err == f"{prog}: error: {message} (see {prog} --help)\n"
