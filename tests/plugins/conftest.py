"""The plugin tests import their ONNX graph helper (sma_graph.py) from this folder.

The `plugin_library` and `trt` fixtures they use live in tests/conftest.py, shared with the
engine-build tests."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # sma_graph helper
