"""Flow: motion intensity (paper Eq. 5-7) and the foreground flow maps for the region-aware loss (Eq. 9).

Reads the stored frames; writes ``intensity``, ``intensity_per_step``, ``intensity_units`` and the ``flow.npy``
member. Every backend returns flow fields at ``work_px``; magnitudes are rescaled to ``decode.size_px`` pixels per
step, and one function (metrics.compute_flow_intensity) turns them into the intensity, whatever the backend.
"""

from __future__ import annotations

import cv2
import numpy as np

from human_motion.engine.config import BuildConfig, FlowConfig
from human_motion.stages.faces import npy_bytes
from human_motion.backends.optical_flow import flow_magnitudes, make_flow
from human_motion.metrics import compute_flow_intensity, flow_maps_uint8
from human_motion.stages.base import Stage
from human_motion.types import Row


def face_region_motion(magnitudes: np.ndarray, boxes: np.ndarray, out_px: int) -> float:
    """Mean |f| inside the face box of each step (pixels per step at out_px): the face's own motion, apart from
    camera motion and moving hands that the paper's clip-level intensity also counts."""
    scale = magnitudes.shape[-1] / out_px
    values = []
    for i, m in enumerate(magnitudes):
        x0, y0, x1, y1 = (np.asarray(boxes[i], np.float64) * scale).round().astype(int)
        region = m[max(0, y0):max(0, y1), max(0, x0):max(0, x1)]
        if region.size:
            values.append(float(region.mean()))
    return float(np.mean(values)) if values else 0.0


class FlowIntensity(Stage):
    """Adds ``intensity`` (pixels per step at size_px and fps) and the ``flow.npy`` member; never drops rows."""

    name = "flow"

    def __init__(self, cfg: BuildConfig):
        super().__init__(cfg)
        self.flow = make_flow(cfg.flow)

    def process(self, row: Row) -> list[Row]:
        d = self.cfg.decode
        maps_px = d.size_px // 8
        if row.record["static"]:
            # Static samples: zero intensity by construction ("zero-intensity calibration" in the paper).
            intensity, per_step = 0.0, np.zeros(d.num_frames - 1, np.float32)
            maps = np.zeros((d.num_frames - 1, maps_px, maps_px), np.uint8)
        else:
            magnitudes = flow_magnitudes(row.frames, self.flow, self.cfg.flow.work_px, d.size_px)
            intensity, per_step, fg = compute_flow_intensity(magnitudes)
            maps = flow_maps_uint8(fg, maps_px)
            boxes = row.record.get("faces", {}).get("boxes")
            if boxes:
                row.record["scores"]["face_flow_px"] = face_region_motion(magnitudes, np.asarray(boxes), d.size_px)
        row.record.update(
            intensity=float(intensity),
            intensity_per_step=[float(v) for v in per_step],
            intensity_units={"unit": "px_per_step", "backend": self.flow.name, "resolution_px": d.size_px,
                             "fps": d.fps, "work_px": self.cfg.flow.work_px},
        )
        row.record.setdefault("backends", {})["flow"] = f"{self.flow.name} {self.flow.version}"
        row.blobs["flow.npy"] = npy_bytes(maps)
        return [row]
