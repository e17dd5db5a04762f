"""Optical flow backends and the build's intensity measurement (paper Eq. 5-7) on a window of frames.

Every backend maps frames (t, h, w, 3) uint8 RGB to flow fields (t-1, h, w, 2) in pixels. ``measure_intensity`` is
the one function that turns frames into the intensity, whatever the backend: the flow stage, ``hm eval`` and the
benchmarks all call it, so measured and trained intensities share units. Backends read their settings from any
object with the ``flow`` section's attributes (``backend``, ``raft_weights``, ``raft_iters``,
``raft_pairs_per_call``, ``device``, ``precision``).
"""

from __future__ import annotations

import pathlib

import cv2
import numpy as np

from human_motion.devices import auto_device, torch_dtype
from human_motion.metrics import compute_flow_intensity, flow_magnitude, flow_maps_uint8


class OpenCVFlow:
    """DIS (default: fast, robust to large motion) or Farneback, on grayscale frames; no weights."""

    def __init__(self, method: str):
        self.method = method
        self.name = f"opencv-{method}"
        self.version = cv2.__version__
        if method == "dis":
            self.dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """frames (t, h, w, 3) uint8 RGB -> flows (t-1, h, w, 2) in pixels."""
        gray = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
        flows = []
        for a, b in zip(gray[:-1], gray[1:]):
            if self.method == "dis":
                flows.append(self.dis.calc(a, b, None))
            else:
                flows.append(cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 4, 21, 3, 5, 1.1, 0))
        return np.stack(flows)


class RaftFlow:
    """torchvision RAFT (small or large), the frame pairs of a window in one batch (or chunks of
    ``flow.raft_pairs_per_call``), in fp32 or under fp16/bf16 autocast. Loaded once per Ray actor.

    Weights: ``flow.raft_weights`` (a local state dict, .pth or .safetensors) or torchvision's default weights,
    which come from its cache (``TORCH_HOME``) or are downloaded once.
    """

    def __init__(self, cfg):
        import torch
        import torchvision
        from torchvision.models import optical_flow

        self.torch = torch
        large = cfg.backend == "raft_large"
        builder = optical_flow.raft_large if large else optical_flow.raft_small
        default = optical_flow.Raft_Large_Weights.DEFAULT if large else optical_flow.Raft_Small_Weights.DEFAULT
        if cfg.raft_weights:
            self.model = builder(weights=None)
            try:
                self.model.load_state_dict(load_state_dict(cfg.raft_weights))
            except RuntimeError as e:  # missing/unexpected keys or shapes: usually small weights for large
                raise ValueError(f"flow.raft_weights={cfg.raft_weights} is not a {cfg.backend} state dict: "
                                 f"{str(e).splitlines()[0]}") from e
            weights = pathlib.Path(cfg.raft_weights).name
        else:
            try:
                self.model = builder(weights=default)
            except OSError as e:  # offline and not in TORCH_HOME's cache
                raise RuntimeError(f"cannot load torchvision's {default} weights ({e}); download them once "
                                   "(python -c 'import torchvision; torchvision.models.optical_flow."
                                   f"{builder.__name__}(weights=\"DEFAULT\")') or set flow.raft_weights to a local "
                                   "file") from e
            weights = str(default)
        self.device = auto_device(cfg.device)
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise RuntimeError("flow.device=cuda but no CUDA device is visible here (under Ray, give the flow stage "
                               "flow.num_gpus > 0)")
        self.dtype = torch_dtype(cfg.precision)
        if self.device == "cpu" and self.dtype == torch.float16:
            raise ValueError("flow.precision=fp16 needs CUDA; use fp32 or bf16 on CPU")
        if self.device.startswith("cuda"):
            torch.backends.cudnn.benchmark = True  # every call has the same shapes (work_px, pairs per window)
        self.model = self.model.eval().to(self.device)
        self.iters = cfg.raft_iters
        self.pairs_per_call = cfg.raft_pairs_per_call
        self.name = cfg.backend
        self.version = f"torchvision {torchvision.__version__} {weights} {cfg.precision} iters={cfg.raft_iters}"

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """frames (t, h, w, 3) uint8 RGB, h and w multiples of 8 -> flows (t-1, h, w, 2) in pixels (fp32)."""
        torch = self.torch
        x = torch.from_numpy(np.ascontiguousarray(frames)).to(self.device).permute(0, 3, 1, 2).float()  # (t, 3, h, w)
        x = x / 127.5 - 1.0  # torchvision's RAFT transforms: [-1, 1]
        step = self.pairs_per_call or len(x) - 1
        out = []
        with torch.inference_mode(), torch.autocast(self.device.split(":")[0], dtype=self.dtype,
                                                    enabled=self.dtype != torch.float32):
            for i in range(0, len(x) - 1, step):
                j = min(i + step, len(x) - 1)
                out.append(self.model(x[i:j], x[i + 1:j + 1], num_flow_updates=self.iters)[-1].float())  # (p, 2, h, w)
        return torch.cat(out).permute(0, 2, 3, 1).cpu().numpy()


def load_state_dict(path: str) -> dict:
    """A state dict from .safetensors or a torch file, never unpickling arbitrary objects."""
    import torch

    if not pathlib.Path(path).is_file():
        raise FileNotFoundError(f"flow.raft_weights: no file {path}")
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(path)
    return torch.load(path, map_location="cpu", weights_only=True)


def make_flow(cfg):
    if cfg.backend in ("dis", "farneback"):
        return OpenCVFlow(cfg.backend)
    return RaftFlow(cfg)


def flow_magnitudes(frames: np.ndarray, flow, work_px: int, out_px: int) -> np.ndarray:
    """|f_i| (t-1, work_px, work_px) in ``out_px`` pixels per step; frames are resized to ``work_px`` first."""
    h = frames.shape[1]
    small = frames if h == work_px else np.stack(
        [cv2.resize(f, (work_px, work_px), interpolation=cv2.INTER_AREA) for f in frames])
    return np.stack([flow_magnitude(f) for f in flow(small)]) * (out_px / work_px)


def measure_intensity(frames: np.ndarray, flow, work_px: int, out_px: int) -> tuple[float, np.ndarray, np.ndarray]:
    """Intensity of a window: (M, per-step f_fg (t-1,), uint8 foreground maps (t-1, out_px/8, out_px/8))."""
    intensity, per_step, fg = compute_flow_intensity(flow_magnitudes(frames, flow, work_px, out_px))
    return intensity, per_step, flow_maps_uint8(fg, out_px // 8)
