"""PNG encoding (Pillow) and colour mapping (numpy only, no matplotlib needed).

Images are shown in the neurological convention of :mod:`kcross_metric.data.io` arrays: rows are
flipped so that anterior is up, columns stay left -> right (patient left on the viewer's left).
"""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image

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


def encode_png(image: np.ndarray) -> bytes:
    """Encode a uint8 ``(H, W)`` grayscale or ``(H, W, 3)`` RGB array as 8-bit PNG bytes (no metadata).

    The bytes depend only on the pixels (and the Pillow version): no time stamp or text chunk.
    """
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise ShapeError(f"encode_png expects uint8 pixels, got {arr.dtype}")
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 3)):
        raise ShapeError(f"encode_png expects (H, W) or (H, W, 3), got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ShapeError(f"encode_png expects a non-empty image, got shape {arr.shape}")
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


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
