"""One logging set-up for every command."""

from __future__ import annotations

import logging


def setup_logging(prog: str) -> None:
    """mild's messages from INFO up, prefixed by the command; other libraries' from WARNING up, so
    users read our progress, not the ONNX optimizer's notes on each initializer it merges."""
    logging.basicConfig(level=logging.WARNING, format=f"{prog}: %(message)s")
    logging.getLogger("mild").setLevel(logging.INFO)
