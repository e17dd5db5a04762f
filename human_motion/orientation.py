"""How stored pixels are turned to be shown: a video frame's display matrix (phones store pixels sideways with a
matrix that turns them upright), a stream's ``rotate`` tag, an image's EXIF orientation. media.py applies it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Orientation:
    """How stored pixels are turned to be shown: rotated ``rotation_deg`` clockwise (0, 90, 180 or 270), then
    mirrored left-right if ``mirrored``. A phone's portrait video is typically ``Orientation(90)``."""

    rotation_deg: int = 0
    mirrored: bool = False

    @classmethod
    def from_display_matrix(cls, matrix: np.ndarray) -> Orientation:
        """From FFmpeg's 3x3 display matrix (9 int32, 16.16 fixed point), which maps a stored pixel (x, y), y
        down, to (a x + c y, b x + d y). Angles that are not a multiple of 90 degrees snap to the nearest."""
        a, b, c, d = (float(matrix[i]) for i in (0, 1, 3, 4))
        det = a * d - b * c
        if det == 0:
            return cls()
        mirrored = det < 0
        angle = math.degrees(math.atan2(b, -a if mirrored else a))
        return cls(int(round(angle / 90.0)) * 90 % 360, mirrored)

    @classmethod
    def from_exif(cls, tag: Any) -> Orientation:
        """From the EXIF Orientation tag (1-8); other values mean upright."""
        return _EXIF.get(tag, cls()) if isinstance(tag, int) else cls()

    def apply(self, image: np.ndarray) -> np.ndarray:
        if self.rotation_deg == 0 and not self.mirrored:
            return image
        out = np.rot90(image, k=-(self.rotation_deg // 90))  # negative k: clockwise
        if self.mirrored:
            out = out[:, ::-1]
        return np.ascontiguousarray(out)

    def to_json(self) -> dict[str, Any]:
        return {"rotation_deg": self.rotation_deg, "mirrored": self.mirrored}


# EXIF 2: mirrored; 3: 180; 4: flipped top-bottom; 5: transposed; 6: 90 clockwise; 7: transversed; 8: 270.
_EXIF = {1: Orientation(0), 2: Orientation(0, True), 3: Orientation(180), 4: Orientation(180, True),
         5: Orientation(90, True), 6: Orientation(90), 7: Orientation(270, True), 8: Orientation(270)}


def tag_orientation(stream) -> Orientation:
    """The ``rotate`` tag (degrees clockwise) some tools write instead of a display matrix."""
    tags = {k.lower(): v for k, v in stream.metadata.items()}
    try:
        degrees = float(tags.get("rotate", 0))
    except ValueError:
        return Orientation()
    return Orientation(int(round(degrees / 90.0)) * 90 % 360) if math.isfinite(degrees) else Orientation()


def frame_orientation(frame, fallback: Orientation = Orientation()) -> Orientation:
    """A decoded frame's display matrix as an Orientation; ``fallback`` (the stream's tag) when it has none."""
    matrix = frame.side_data.get("DISPLAYMATRIX")
    if matrix is None:
        return fallback
    return Orientation.from_display_matrix(np.frombuffer(bytes(matrix), dtype=np.int32))
