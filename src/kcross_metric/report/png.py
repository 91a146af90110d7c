"""PNG encoding and colour mapping with numpy and zlib only (no Pillow or matplotlib needed).

Images are shown in the neurological convention of :mod:`kcross_metric.io` arrays: rows are
flipped so that anterior is up, columns stay left -> right (patient left on the viewer's left).
"""

from __future__ import annotations

import base64
import struct
import zlib

import numpy as np

from ..errors import ShapeError

__all__ = [
    "INFERNO_ANCHORS",
    "colormap_rgb",
    "encode_png",
    "gray_rgb",
    "overlay_mask",
    "png_data_uri",
    "to_display",
]

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

#: Anchor colours of a perceptually ordered dark->bright map (approximating matplotlib's
#: "inferno"), linearly interpolated in between.
INFERNO_ANCHORS = np.array(
    [
        [0, 0, 4],
        [40, 11, 84],
        [101, 21, 110],
        [159, 42, 99],
        [212, 72, 66],
        [245, 125, 21],
        [250, 193, 39],
        [252, 255, 164],
    ],
    dtype=np.float64,
)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def encode_png(image: np.ndarray) -> bytes:
    """Encode a uint8 ``(H, W)`` grayscale or ``(H, W, 3)`` RGB array as PNG bytes (8 bit, no filter)."""
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise ShapeError(f"encode_png expects uint8 pixels, got {arr.dtype}")
    if arr.ndim == 2:
        color_type, channels = 0, 1
    elif arr.ndim == 3 and arr.shape[2] == 3:
        color_type, channels = 2, 3
    else:
        raise ShapeError(f"encode_png expects (H, W) or (H, W, 3), got shape {arr.shape}")
    h, w = arr.shape[:2]
    if h == 0 or w == 0:
        raise ShapeError(f"encode_png expects a non-empty image, got shape {arr.shape}")
    rows = np.ascontiguousarray(arr).reshape(h, w * channels)
    raw = np.concatenate([np.zeros((h, 1), dtype=np.uint8), rows], axis=1).tobytes()  # filter 0 per row
    header = struct.pack(">IIBBBBB", w, h, 8, color_type, 0, 0, 0)
    return _PNG_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(raw, 9)) + _chunk(b"IEND", b"")


def png_data_uri(image: np.ndarray) -> str:
    """``data:image/png;base64,...`` URI of :func:`encode_png` output."""
    return "data:image/png;base64," + base64.b64encode(encode_png(image)).decode("ascii")


def to_display(slice_2d: np.ndarray) -> np.ndarray:
    """(H, W) array in package orientation (row 0 posterior) -> anterior-up display orientation."""
    return np.ascontiguousarray(np.asarray(slice_2d)[::-1])


def _unit(values: np.ndarray, vmin: float, vmax: float) -> np.ndarray:
    span = vmax - vmin
    if not span > 0:
        return np.zeros(np.shape(values), dtype=np.float64)
    return np.clip((np.asarray(values, dtype=np.float64) - vmin) / span, 0.0, 1.0)


def gray_rgb(image: np.ndarray, vmin: float = 0.0, vmax: float = 1.0) -> np.ndarray:
    """(H, W) values -> (H, W, 3) uint8 gray, ``vmin`` black and ``vmax`` white."""
    g = np.round(_unit(image, vmin, vmax) * 255.0).astype(np.uint8)
    return np.repeat(g[..., None], 3, axis=2)


def colormap_rgb(image: np.ndarray, vmin: float, vmax: float) -> np.ndarray:
    """(H, W) values -> (H, W, 3) uint8 through :data:`INFERNO_ANCHORS` (``vmin`` dark, ``vmax`` bright)."""
    t = _unit(image, vmin, vmax) * (len(INFERNO_ANCHORS) - 1)
    lo = np.floor(t).astype(np.int64).clip(0, len(INFERNO_ANCHORS) - 2)
    frac = (t - lo)[..., None]
    rgb = INFERNO_ANCHORS[lo] * (1.0 - frac) + INFERNO_ANCHORS[lo + 1] * frac
    return np.round(rgb).astype(np.uint8)


def overlay_mask(rgb: np.ndarray, mask: np.ndarray, color: tuple[int, int, int] = (255, 40, 40), alpha: float = 0.4) -> np.ndarray:
    """Tint ``mask`` pixels of an (H, W, 3) uint8 image with ``color`` and draw its outline opaque."""
    m = np.asarray(mask, dtype=bool)
    if m.shape != rgb.shape[:2]:
        raise ShapeError(f"mask shape {m.shape} does not match image shape {rgb.shape[:2]}")
    out = rgb.astype(np.float64)
    col = np.asarray(color, dtype=np.float64)
    out[m] = out[m] * (1.0 - alpha) + col * alpha
    inner = m.copy()
    inner[1:] &= m[:-1]
    inner[:-1] &= m[1:]
    inner[:, 1:] &= m[:, :-1]
    inner[:, :-1] &= m[:, 1:]
    out[m & ~inner] = col
    return np.round(out).astype(np.uint8)
