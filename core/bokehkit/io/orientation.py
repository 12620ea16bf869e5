"""EXIF orientation: the photo as stored (raw pixels) and as displayed.

bokehkit renders and writes the raw pixels and keeps the EXIF Orientation tag, so a viewer
turns the result as it turned the photo. What the user gives in pixels, a painted focus
mask, a focus point, a depth map, is in display coordinates: the photo as they see it.
These functions move such maps and points into the raw frame.

Orientation values (EXIF 2.32, tag 0x0112) say how the stored image is turned for display:
1 as is, 2 mirrored left-right, 3 turned 180°, 4 mirrored top-bottom, 5 transposed (mirrored
along the main diagonal), 6 turned 90° clockwise, 7 transversed (mirrored along the other
diagonal), 8 turned 90° anticlockwise.
"""

from __future__ import annotations

import numpy as np

ORIENTATION_TAG = 0x0112
_TURNED = (5, 6, 7, 8)  # width and height swap
_INVERSE = {6: 8, 8: 6}  # the others undo themselves


def exif_orientation(exif: bytes | None) -> int:
    """The Orientation of TIFF-structured EXIF bytes; 1 when absent or unreadable."""
    if not exif:
        return 1
    from PIL import Image

    try:
        ex = Image.Exif()
        ex.load(exif)
        value = int(ex.get(ORIENTATION_TAG, 1))
    except Exception:  # noqa: BLE001 - unreadable EXIF: as stored
        return 1
    return value if 1 <= value <= 8 else 1


def display_size(width: int, height: int, orientation: int) -> tuple[int, int]:
    """(width, height) of the photo as displayed, from its raw size."""
    return (height, width) if orientation in _TURNED else (width, height)


def display_from_raw(a: np.ndarray, orientation: int) -> np.ndarray:
    """A raw-frame map (H×W or H×W×C) as displayed (what a viewer shows)."""
    if orientation == 2:
        return a[:, ::-1]
    if orientation == 3:
        return a[::-1, ::-1]
    if orientation == 4:
        return a[::-1]
    if orientation == 5:
        return np.swapaxes(a, 0, 1)
    if orientation == 6:
        return np.rot90(a, -1)
    if orientation == 7:
        return np.swapaxes(a, 0, 1)[::-1, ::-1]
    if orientation == 8:
        return np.rot90(a, 1)
    return a


def raw_from_display(a: np.ndarray, orientation: int) -> np.ndarray:
    """A display-frame map (a painted mask, a depth map) in the raw frame, contiguous."""
    return np.ascontiguousarray(display_from_raw(a, _INVERSE.get(orientation, orientation)))


def raw_point(x: float, y: float, raw_width: int, raw_height: int, orientation: int):
    """A point in display pixels as a point in raw pixels (pixel centres map exactly)."""
    w, h = raw_width, raw_height
    return {
        2: (w - 1 - x, y),
        3: (w - 1 - x, h - 1 - y),
        4: (x, h - 1 - y),
        5: (y, x),
        6: (y, h - 1 - x),
        7: (w - 1 - y, h - 1 - x),
        8: (w - 1 - y, x),
    }.get(orientation, (x, y))
