"""Automatic subject: ISNet (DIS, general use) run with onnxruntime on the CPU.

The model is installed by the model manager (`bokehkit models install isnet`, from the npm
package @imgly/background-removal-data); nothing here downloads anything. Pre- and
post-processing follow IMG.LY's own code (@imgly/background-removal, `runInference` and
`tensorHWCtoBCHW`): the RGB photo is resized to 1024×1024 (bilinear, aspect not kept),
normalised as (x − 128) / 256 per channel with x the 8-bit sRGB code value, and the model's
`output` (1×1×1024×1024) is already a 0..1 matte, resized back to the photo's size. No torch.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import BokehkitError
from ..io.colour import linear_to_srgb

MODEL_ID = "isnet"
INPUT_SIZE = 1024
MEAN = 128.0
STD = 256.0
#: A matte whose brightest pixel is below this holds no subject.
SUBJECT_LEVEL = 0.5
#: Parts of the matte smaller than this share of its largest part are specks (a leaf, a
#: glint in the trees), not the subject: kept, they would stay sharp in the blurred
#: background as dark or bright flecks.
MIN_PART_SHARE = 0.02
#: How far (share of the image's longer side) the matte's soft rim may reach beyond a part
#: that is kept (hair, fur, a blurred edge).
RIM_SHARE = 0.015

_lock = threading.Lock()
_sessions: dict[tuple[str, float], object] = {}
_last: tuple[bytes, tuple[int, int], np.ndarray] | None = None  # one mask, for previews


def model_path(store: str | Path | None = None) -> Path | None:
    """The installed ISNet file, or None (never downloads)."""
    from ..store import installed_path

    return installed_path(MODEL_ID, store)


def _session(path: Path):
    try:
        import onnxruntime as ort
    except ImportError:  # pragma: no cover - a pinned dependency
        raise BokehkitError(
            "the automatic subject needs onnxruntime: pip install -r requirements/core.txt"
        ) from None
    key = (str(path), path.stat().st_mtime)
    with _lock:
        sess = _sessions.get(key)
        if sess is None:
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = os.cpu_count() or 1
            opts.log_severity_level = 3
            try:
                sess = ort.InferenceSession(
                    str(path), sess_options=opts, providers=["CPUExecutionProvider"]
                )
            except Exception as exc:  # noqa: BLE001 - a damaged file: say what to do
                raise BokehkitError(
                    f"cannot load {path} ({type(exc).__name__}); "
                    f"run: bokehkit models verify {MODEL_ID}"
                ) from None
            _sessions.clear()
            _sessions[key] = sess
    return sess


def _input_from_srgb8(rgb: np.ndarray) -> np.ndarray:
    """H×W×3 uint8 sRGB → 1024×1024×3 float32 code values (0..255)."""
    im = Image.fromarray(np.ascontiguousarray(rgb[..., :3]), "RGB")
    return np.asarray(im.resize((INPUT_SIZE, INPUT_SIZE), Image.BILINEAR), np.float32)


def _input_from_linear(linear_rgb: np.ndarray) -> np.ndarray:
    """Linear light (the pipeline's image) → 1024×1024×3 sRGB code values. Resized first, in
    linear light (an area-correct average), then encoded, so a 24 MP photo costs little."""
    planes = [
        np.asarray(
            Image.fromarray(np.ascontiguousarray(linear_rgb[..., c], np.float32), "F").resize(
                (INPUT_SIZE, INPUT_SIZE), Image.BILINEAR
            )
        )
        for c in range(3)
    ]
    small = np.clip(np.stack(planes, axis=-1), 0.0, 1.0)
    return np.asarray(linear_to_srgb(small), np.float32) * 255.0


def _run(x255: np.ndarray, size: tuple[int, int], path: Path) -> np.ndarray:
    global _last
    key = hashlib.sha1(np.round(x255).astype(np.uint8).tobytes()).digest() + str(path).encode()
    with _lock:
        if _last is not None and _last[0] == key and _last[1] == size:
            return _last[2].copy()
    tensor = ((x255 - MEAN) / STD).transpose(2, 0, 1)[None].astype(np.float32)
    sess = _session(path)
    matte = sess.run(["output"], {"input": np.ascontiguousarray(tensor)})[0][0, 0]
    w, h = size
    mask = np.asarray(
        Image.fromarray(np.asarray(matte, np.float32), "F").resize((w, h), Image.BILINEAR)
    )
    mask = np.clip(mask, 0.0, 1.0).astype(np.float32)
    with _lock:
        _last = (key, size, mask)
    return mask.copy()


def subject_mask(rgb8: np.ndarray, path: str | Path | None = None) -> np.ndarray:
    """Soft subject mask (H×W float32, 0..1) of an 8-bit sRGB photo (H×W×3, or grey H×W)."""
    rgb8 = np.asarray(rgb8)
    if rgb8.dtype != np.uint8:
        raise BokehkitError("subject_mask wants 8-bit RGB; use subject_mask_linear")
    if rgb8.ndim == 2:
        rgb8 = np.repeat(rgb8[..., None], 3, axis=-1)
    p = Path(path) if path else _require()
    h, w = rgb8.shape[:2]
    return _run(_input_from_srgb8(rgb8), (w, h), p)


def subject_mask_linear(linear_rgb: np.ndarray, path: str | Path | None = None) -> np.ndarray:
    """Soft subject mask of an image in linear light (what the pipeline holds)."""
    p = Path(path) if path else _require()
    h, w = linear_rgb.shape[:2]
    return _run(_input_from_linear(linear_rgb), (w, h), p)


def main_subject(matte: np.ndarray) -> np.ndarray:
    """The matte without its specks: parts (connected, ≥ SUBJECT_LEVEL) smaller than
    MIN_PART_SHARE of the largest are dropped with their soft surroundings; the soft rim
    of the parts kept stays. Several people are several large parts: all stay."""
    from scipy import ndimage

    solid = matte >= SUBJECT_LEVEL
    labels, count = ndimage.label(solid)
    if count == 0:
        return matte
    areas = np.bincount(labels.ravel())[1:]
    kept_ids = np.flatnonzero(areas >= MIN_PART_SHARE * areas.max()) + 1
    if kept_ids.size == count:
        return _rim_only(matte, solid)
    return _rim_only(matte, np.isin(labels, kept_ids))


def _rim_only(matte: np.ndarray, kept: np.ndarray) -> np.ndarray:
    """The matte where it lies within the rim of the `kept` parts, 0 elsewhere. The rim is
    found on a copy at most 1024 px long (a maximum filter there), which is plenty for a
    band a few per cent of the image wide."""
    from scipy import ndimage

    h, w = kept.shape
    f = max(1, -(-max(h, w) // 1024))
    small = np.pad(kept, ((0, -h % f), (0, -w % f)))
    small = small.reshape(small.shape[0] // f, f, small.shape[1] // f, f).any(axis=(1, 3))
    reach = max(1, int(round(RIM_SHARE * max(h, w) / f)))
    near = ndimage.maximum_filter(small, size=2 * reach + 1)
    near = np.repeat(np.repeat(near, f, axis=0), f, axis=1)[:h, :w]
    return np.where(near, matte, np.float32(0)).astype(np.float32)


def _require() -> Path:
    from ..store import require

    return require(MODEL_ID)
