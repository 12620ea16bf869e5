"""JPEG: the IJG quality a file's quantisation tables correspond to (kept for the result)."""

from __future__ import annotations

from typing import Any

import numpy as np

_IJG_LUMA = np.array(
    [16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57,
     69, 56, 14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55,
     64, 81, 104, 113, 92, 49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100,
     103, 99],
    dtype=np.float64,
)  # fmt: skip


def _guess_jpeg_quality(qtables: Any) -> int | None:
    """IJG quality whose luminance table is closest in scale to the file's."""
    if not qtables or 0 not in qtables:
        return None
    q = np.asarray(qtables[0], dtype=np.float64)
    if q.size != 64:
        return None
    scale = 100.0 * q.sum() / _IJG_LUMA.sum()  # IJG scale factor S
    quality = (200.0 - scale) / 2.0 if scale <= 100.0 else 5000.0 / scale
    return int(np.clip(round(quality), 1, 100))
