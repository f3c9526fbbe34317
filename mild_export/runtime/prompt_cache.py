"""Text encodings kept per prompt, for the deployment backends (TensorRT, torch).

The same prompts give the same token ids and so the same encodings, and an application's prompt
rarely changes between images; the text encoder is 16-28 ms of an SDXL image on an H200
(bench/RESULTS.md), a tenth of the 0.25 s target.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping

from torch import Tensor

SIZE = 32  # prompts kept; the least recently used goes first


class PromptCache:
    def __init__(self, size: int = SIZE):
        self.size = size
        self._entries: OrderedDict[tuple, dict[str, Tensor]] = OrderedDict()

    def encodings(
        self, token_ids: Mapping[str, Tensor], encode: Callable[[], Mapping[str, Tensor]]
    ) -> dict[str, Tensor]:
        """The encodings of `token_ids`: kept ones (a new dict of the same tensors), else `encode()`'s."""
        key = tuple((n, tuple(t.shape), t.cpu().numpy().tobytes()) for n, t in sorted(token_ids.items()))
        if key in self._entries:
            self._entries.move_to_end(key)
        else:
            self._entries[key] = dict(encode())
            if len(self._entries) > self.size:
                self._entries.popitem(last=False)
        return dict(self._entries[key])

    def __len__(self) -> int:
        return len(self._entries)
