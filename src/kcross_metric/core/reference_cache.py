"""A bounded store of the reference side of K-CROSS, reused across calls.

In a validation loop the real (and source) images are the same every epoch; only the fake changes.
Everything K-CROSS computes from the real image and the source alone (their lesion probabilities and
region, the real k-space and every encoder's feature maps of the real image and the source, the
source-to-real structure distance) is therefore kept here, per chunk of ``slice_batch_size`` axial
slices, keyed by the chunk's content, so that a later call with the same reference computes the fake
side only.

Design (docs/design-decisions.md, "Reference cache"):

* **Unit and key**: a chunk, the batch of slices the metric runs its networks on at once, keyed by a
  BLAKE2b digest of its bytes after the metric's intensity mapping (real, source or none, mask or
  none), their shapes and dtypes, the device and the metric's ``min_lesion_pixels``. A hit returns
  the tensors computed on exactly that batch, so scores are bit for bit those of the uncached metric
  (per-slice entries would not be: a convolution's float32 rounding can depend on the batch it runs
  in, by about 2e-8 in the score).
* **Bound**: ``max_bytes`` of tensor storage (about 10.5 MB per 256x256 slice). When full, new
  chunks are *not* admitted and nothing is evicted: a validation set scanned in the same order every
  epoch that is larger than the cache keeps its first chunks cached, where least-recently-used
  eviction would drop every entry just before its reuse. ``clear()`` empties it.
* **Validity**: the store is emptied when the networks' parameters change (moved to another device,
  loaded, or modified in place: their data pointers and version counters are checked every call).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch

__all__ = ["ReferenceCache", "ReferenceCacheInfo", "entry_bytes", "content_key"]

#: One cached chunk: tensor name -> (N, ...) tensor (lists of encoder levels flattened to ``name.i``)
Entry = dict[str, torch.Tensor]


@dataclass(frozen=True)
class ReferenceCacheInfo:
    """Counters of a :class:`ReferenceCache` (chunks of slices, not calls)."""

    hits: int
    misses: int
    entries: int
    bytes: int
    max_bytes: int
    #: chunks that missed and were not stored because the cache was full
    not_admitted: int


def entry_bytes(entry: Entry) -> int:
    return sum(t.numel() * t.element_size() for t in entry.values())


def _tensor_bytes(t: torch.Tensor) -> bytes:
    # bool and complex tensors have no numpy view of every dtype; view the raw storage as bytes
    flat = t.detach().contiguous().reshape(-1)
    if flat.dtype == torch.bool:
        flat = flat.to(torch.uint8)
    return flat.view(torch.uint8).numpy().tobytes()


def content_key(parts: tuple[torch.Tensor | None, ...], context: tuple[object, ...]) -> bytes:
    """Digest of CPU tensors ``parts`` (``None`` allowed) and hashable ``context`` values."""
    h = hashlib.blake2b(digest_size=20)
    h.update(repr(context).encode())
    for t in parts:
        if t is None:
            h.update(b"<none>")
            continue
        h.update(f"{tuple(t.shape)}|{t.dtype}".encode())
        h.update(_tensor_bytes(t))
    return h.digest()


class ReferenceCache:
    """Chunks' reference-side tensors by content key, up to ``max_bytes`` (0: stores nothing)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = int(max_bytes)
        self._entries: dict[bytes, Entry] = {}
        self._bytes = 0
        self._hits = self._misses = self._not_admitted = 0
        self._fingerprint: tuple[object, ...] | None = None

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0

    def check_fingerprint(self, fingerprint: tuple[object, ...]) -> None:
        """Empty the store if ``fingerprint`` (of the networks) differs from the last one seen."""
        if fingerprint != self._fingerprint:
            self.clear()
            self._fingerprint = fingerprint

    def get(self, key: bytes) -> Entry | None:
        entry = self._entries.get(key)
        if entry is None:
            self._misses += 1
        else:
            self._hits += 1
        return entry

    def put(self, key: bytes, entry: Entry) -> bool:
        """Store ``entry`` (tensors that own their memory) if it fits; True if stored."""
        if key in self._entries:
            return True
        size = entry_bytes(entry)
        if self._bytes + size > self.max_bytes:
            self._not_admitted += 1
            return False
        self._entries[key] = entry
        self._bytes += size
        return True

    def clear(self) -> None:
        self._entries.clear()
        self._bytes = 0

    def info(self) -> ReferenceCacheInfo:
        return ReferenceCacheInfo(self._hits, self._misses, len(self._entries), self._bytes, self.max_bytes,
                                  self._not_admitted)

    def __len__(self) -> int:
        return len(self._entries)

    # a copied or pickled metric (torchmetrics clones, DDP spawn) starts with an empty cache of the same
    # bound: the entries are recomputable, can be large, and may sit on another process's device
    def __getstate__(self) -> dict[str, object]:
        return {"max_bytes": self.max_bytes}

    def __setstate__(self, state: dict[str, object]) -> None:
        max_bytes = state["max_bytes"]
        self.__init__(int(max_bytes) if isinstance(max_bytes, (int, float)) else 0)  # type: ignore[misc]
