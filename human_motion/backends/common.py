"""What every face backend shares: the detection record and the install hint of a missing backend."""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass
class Detection:
    box: np.ndarray  # (4,) x0, y0, x1, y1 in pixels
    score: float
    kps5: np.ndarray | None = None  # (5, 2) eyes, nose, mouth corners (image-left first)


def missing_backend(package: str, hint: str) -> ImportError:
    return ImportError(f"the {package!r} face backend needs {hint}; run `bash scripts/setup.sh`")
