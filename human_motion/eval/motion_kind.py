"""The kind of a clip's motion, read from its optical flow: side to side, up and down, towards/away, or rotating.

Each flow field (h, w, 2) is fitted, by least squares over every pixel, with the 4-parameter motion of a plane seen
face-on: ``u = tx + a*x - b*y``, ``v = ty + b*x + a*y`` (x, y from the frame centre). ``tx`` and ``ty`` are the
horizontal and vertical translation, ``a`` the divergence (zoom) and ``b`` the curl (in-plane rotation). Each
component is turned into pixels per step, so that they compare: ``|tx|``, ``|ty|``, and ``|a| * r`` and ``|b| * r``
with ``r`` the frame's root-mean-square radius (the mean displacement a zoom or rotation gives a pixel). A clip's
component is the mean over its steps; its kind is the largest. A still clip has no kind: a flow whose components
all stay under ``min_px`` is "still".

The fit reads the whole frame, not the face alone, since the build's intensity (paper Eq. 5-7) also counts the whole
frame; a face that smiles or talks in place has none of these kinds and reads "still" or whichever whole-frame
motion dominates.
"""

from __future__ import annotations

import numpy as np

KINDS = ("horizontal", "vertical", "zoom", "rotation")
STILL = "still"


def fit_components(flow: np.ndarray) -> np.ndarray:
    """One flow field (h, w, 2) in pixels -> signed (tx, ty, a * r, b * r) in pixels per step."""
    h, w = flow.shape[:2]
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    x -= (w - 1) / 2
    y -= (h - 1) / 2
    r = float(np.sqrt(np.mean(x * x + y * y)))
    one, zero = np.ones(h * w), np.zeros(h * w)
    x, y = x.ravel(), y.ravel()
    # Rows for u then v; columns tx, ty, a, b.
    design = np.concatenate([np.stack([one, zero, x, -y], 1), np.stack([zero, one, y, x], 1)])
    target = np.concatenate([flow[..., 0].ravel(), flow[..., 1].ravel()]).astype(np.float64)
    (tx, ty, a, b), *_ = np.linalg.lstsq(design, target, rcond=None)
    return np.array([tx, ty, a * r, b * r])


def clip_components(flows: np.ndarray) -> np.ndarray:
    """Flow fields (n, h, w, 2) -> mean absolute (horizontal, vertical, zoom, rotation) over the n steps."""
    if flows.ndim != 4 or flows.shape[-1] != 2 or len(flows) == 0:
        raise ValueError(f"flows must be (steps, h, w, 2) with at least one step, got {flows.shape}")
    return np.abs(np.stack([fit_components(f) for f in flows])).mean(axis=0)


def classify(components: np.ndarray, min_px: float = 0.0) -> str:
    """The kind whose component is largest, or "still" when none exceeds ``min_px``."""
    components = np.asarray(components, np.float64)
    if components.shape != (len(KINDS),):
        raise ValueError(f"components must hold {len(KINDS)} values {KINDS}, got shape {components.shape}")
    best = int(np.argmax(components))
    return KINDS[best] if components[best] > min_px else STILL


def motion_kind(frames: np.ndarray, flow, out_px: int | None = None, min_px: float = 0.0) -> tuple[str, dict]:
    """Frames (t, h, w, 3) uint8 and a flow backend (``backends.optical_flow``: frames -> (t-1, h, w, 2)) -> the
    kind and its components, in pixels per step at ``out_px`` (the clip's own size when None; ``min_px`` in the same
    units)."""
    scale = (out_px / frames.shape[2]) if out_px else 1.0
    components = clip_components(flow(frames)) * scale
    return classify(components, min_px), dict(zip(KINDS, map(float, components)))


def confusion(asked: list[str], found: list[str], kinds: tuple[str, ...] = KINDS) -> dict:
    """Counts of each (asked, found) pair, rows asked, columns found (``kinds`` and then "still"), and accuracy."""
    columns = [*kinds, STILL]
    matrix = {a: {f: 0 for f in columns} for a in kinds}
    for a, f in zip(asked, found):
        if a not in matrix:
            raise ValueError(f"asked kind {a!r} is not one of {kinds}")
        matrix[a][f if f in matrix[a] else STILL] += 1
    n = len(asked)
    correct = sum(matrix[k][k] for k in kinds)
    return {"labels": columns, "matrix": matrix, "n": n, "accuracy": correct / n if n else None}
