"""Flow: motion intensity (paper Eq. 5-7) and the foreground flow maps for the region-aware loss (Eq. 9).

Writes ``intensity``, ``intensity_per_step``, ``intensity_units``, the ``face_flow_px`` score and the ``flow.npy``
member. Every backend (backends/optical_flow.py) returns flow fields at ``work_px``; magnitudes are rescaled to the
stored frame size, in pixels per step, and one function (metrics.compute_flow_intensity) turns them into the
intensity, whatever the backend.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import numpy as np

from human_motion.backends.optical_flow import flow_magnitudes, make_flow
from human_motion.config import ConfigError
from human_motion.metrics import compute_flow_intensity, flow_maps_uint8
from human_motion.stages.base import RowView, Stage, StageResources, runtime
from human_motion.stages.faces import npy_bytes


@dataclasses.dataclass(frozen=True)
class FlowConfig(StageResources):
    backend: Literal["dis", "farneback", "raft_small", "raft_large"] = "dis"
    work_px: int = 256  # flow is computed at this side; magnitudes are reported at the stored frames' scale
    raft_weights: str | None = None  # local .pth/.safetensors state dict; default: torchvision's cache / download
    raft_iters: int = 12
    raft_pairs_per_call: int = runtime(0)  # RAFT: frame pairs per forward pass (0: all; lower caps GPU memory)
    device: str = runtime("auto")  # auto | cpu | cuda
    precision: Literal["fp32", "fp16", "bf16"] = "fp32"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.work_px < 32 or self.work_px % 8:
            raise ConfigError("flow.work_px must be >= 32 and a multiple of 8")
        if self.raft_pairs_per_call < 0 or self.raft_iters < 1:
            raise ConfigError("flow.raft_pairs_per_call must be >= 0 (0: all pairs) and flow.raft_iters >= 1")
        if self.backend.startswith("raft") and self.work_px < 128:
            raise ConfigError("RAFT needs flow.work_px >= 128 (its correlation pyramid downsamples by 8 x 2^3)")


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
    """Never drops rows: every window gets an intensity (0 for a static sample, by construction: the paper's
    "zero-intensity calibration")."""

    name = "flow"
    Config = FlowConfig
    reads = ("frames", "static", "faces", "fps", "num_frames")
    writes = ("intensity", "intensity_per_step", "intensity_units")
    scores = ("face_flow_px",)
    members = ("flow.npy",)

    def __init__(self, cfg: FlowConfig):
        super().__init__(cfg)
        self.flow = make_flow(cfg)

    def process(self, row: RowView) -> list[RowView]:
        frames = row["frames"]
        size_px = frames.shape[1]
        maps_px = size_px // 8
        if row["static"]:
            steps = row["num_frames"] - 1
            intensity, per_step = 0.0, np.zeros(steps, np.float32)
            maps = np.zeros((steps, maps_px, maps_px), np.uint8)
        else:
            magnitudes = flow_magnitudes(frames, self.flow, self.cfg.work_px, size_px)
            intensity, per_step, fg = compute_flow_intensity(magnitudes)
            maps = flow_maps_uint8(fg, maps_px)
            boxes = (row.get("faces") or {}).get("boxes")
            if boxes:
                row.score("face_flow_px", face_region_motion(magnitudes, np.asarray(boxes), size_px))
        row["intensity"] = float(intensity)
        row["intensity_per_step"] = [float(v) for v in per_step]
        row["intensity_units"] = {"unit": "px_per_step", "backend": self.flow.name, "resolution_px": size_px,
                                  "fps": row["fps"], "work_px": self.cfg.work_px}
        row.backend("flow", f"{self.flow.name} {self.flow.version}")
        row.member("flow.npy", npy_bytes(maps))
        return [row]
