"""Dynamic Degree and Motion Smoothness as VBench computes them (Vchitect/VBench, ``vbench/dynamic_degree.py`` and
``vbench/motion_smoothness.py``), with the flow model and the frame interpolator passed in.

Dynamic Degree (per video, True/False; the set's value is the fraction of True):
  - frames: every ``max(1, round(fps / 8))``-th frame of the video (VBench samples to about 8 fps);
  - each consecutive pair: RAFT flow on frames padded to a multiple of 8 (replicate, split evenly, as RAFT's
    ``InputPadder``), the score is the mean of the top ``int(h * w * 0.05)`` flow magnitudes of the padded field;
  - threshold ``max(1, 8 / fps) * 6.0 * min(H, W) / 256`` (``fps``: the container's rate; the factor is 1 at 8 fps
    and above) and ``count = round(4 * n_frames / 16)`` with n_frames the sampled frames (Python's round);
  - dynamic when at least ``count`` pairs score above the threshold.
  VBench's RAFT is the original RAFT-large with ``raft-things.pth`` and 20 iterations; torchvision's
  ``Raft_Large_Weights.C_T_V1`` is the port of those weights, the default here.

Motion Smoothness (per video in [0, 1]):
  - even frames 0, 2, 4, ... are kept; each consecutive pair is interpolated at t = 0.5 (AMT-S in VBench);
  - the interpolated frames are compared with the real odd frames 1, 3, 5, ... (as many as were interpolated):
    score = (255 - mean |real - interpolated|) / 255 over all pixels and channels.
  Only AMT-S makes this VBench's number; ``AmtInterpolator`` loads it through VBench's own AMT code.
"""

from __future__ import annotations

import numpy as np

from human_motion.metrics import flow_magnitude


def pad_to_multiple(frames: np.ndarray, multiple: int = 8) -> np.ndarray:
    """(t, h, w, 3) -> padded with edge values so h and w divide by ``multiple`` (RAFT's InputPadder, sintel mode)."""
    h, w = frames.shape[1:3]
    ph, pw = (-h) % multiple, (-w) % multiple
    if not ph and not pw:
        return frames
    return np.pad(frames, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)), mode="edge")


def top5_mean(flow: np.ndarray) -> float:
    """Mean of the largest 5% flow magnitudes of one field (h, w, 2) (VBench ``get_score``)."""
    rad = flow_magnitude(flow).ravel()
    cut = max(1, int(rad.size * 0.05))
    return float(np.mean(np.sort(rad)[::-1][:cut]))


def dynamic_degree_params(height: int, width: int, n_frames: int, fps: float) -> tuple[float, int]:
    """(threshold in pixels, pairs needed) of VBench ``set_params``."""
    factor = max(1.0, 8.0 / fps) if fps and fps > 0 else 1.0
    return factor * 6.0 * (min(height, width) / 256.0), round(4 * (n_frames / 16.0))


def dynamic_degree(frames: np.ndarray, fps: float, flow) -> dict:
    """VBench's dynamic degree of one video. ``flow``: frames (t, h, w, 3) uint8 -> flows (t-1, h, w, 2) pixels."""
    interval = max(1, round(fps / 8)) if fps and fps > 0 else 1
    sampled = frames[::interval]
    if len(sampled) < 2:
        raise ValueError("dynamic degree needs at least 2 sampled frames")
    h, w = sampled.shape[1:3]
    threshold, count_needed = dynamic_degree_params(h, w, len(sampled), fps)
    flows = flow(pad_to_multiple(sampled))
    scores = [top5_mean(f) for f in flows]
    above = int(sum(s > threshold for s in scores))
    return {
        "dynamic": bool(above >= count_needed), "pair_scores": [round(s, 4) for s in scores],
        "threshold_px": threshold, "pairs_needed": int(count_needed), "pairs_above": above,
        "sampled_frames": int(len(sampled)), "frame_interval": int(interval), "fps": float(fps),
    }


class VBenchRaft:
    """torchvision RAFT as VBench runs it: full-resolution frames, ``iters`` updates, pairs in small batches."""

    def __init__(self, backend: str = "raft_large", weights: str | None = None, iters: int = 20,
                 batch_pairs: int = 4, device: str = "cpu"):
        import torch
        import torchvision
        from torchvision.models import optical_flow

        from human_motion.eval.weights import load_weights, torchvision_weights

        large = backend == "raft_large"
        builder = optical_flow.raft_large if large else optical_flow.raft_small
        self.model = builder(weights=None)
        if weights:
            self.model.load_state_dict(load_weights(weights, "dynamic_degree.raft_weights"))
            self.weights = weights
        else:  # the port of RAFT's raft-things.pth (VBench's weights): torch's cache, or one download when online
            enum = optical_flow.Raft_Large_Weights.C_T_V1 if large else optical_flow.Raft_Small_Weights.C_T_V1
            self.model.load_state_dict(torchvision_weights(enum, "dynamic_degree.raft_weights"))
            self.weights = f"torchvision {enum}"
        self.torch = torch
        self.device = device
        self.model = self.model.eval().to(device)
        self.iters = iters
        self.batch_pairs = batch_pairs
        self.name = f"{backend} (torchvision {torchvision.__version__}, {self.weights}, iters={iters})"

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        torch = self.torch
        x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()  # (t, 3, h, w)
        x = x / 127.5 - 1.0  # RAFT's own normalisation of 0..255 frames
        out = []
        with torch.inference_mode():
            for i in range(0, len(x) - 1, self.batch_pairs):
                a = x[i:i + self.batch_pairs].to(self.device)
                b = x[i + 1:i + 1 + self.batch_pairs].to(self.device)
                a = a[: len(b)]
                out.append(self.model(a, b, num_flow_updates=self.iters)[-1].float().cpu())  # (n, 2, h, w)
        return torch.cat(out).permute(0, 2, 3, 1).numpy()


def make_dynamic_degree_flow(cfg, device: str):
    """The flow model of Dynamic Degree from its config section (RAFT as VBench; ``dis`` only for quick looks)."""
    if cfg.backend == "dis":
        from human_motion.backends.optical_flow import OpenCVFlow

        return OpenCVFlow("dis")
    return VBenchRaft(cfg.backend, cfg.raft_weights, cfg.raft_iters, cfg.batch_pairs, device)


def motion_smoothness(frames: np.ndarray, interpolate) -> dict:
    """VBench's motion smoothness of one video. ``interpolate(a, b) -> middle frame`` on (h, w, 3) uint8 frames."""
    even = frames[0::2]
    odd = frames[1::2]
    if len(even) < 2:
        raise ValueError("motion smoothness needs at least 3 frames")
    mids = [np.asarray(interpolate(a, b)) for a, b in zip(even[:-1], even[1:])]
    diffs = [np.mean(np.abs(odd[i].astype(np.int16) - mids[i].astype(np.int16))) for i in range(len(mids))]
    vfi = float(np.mean(diffs))
    return {"motion_smoothness": (255.0 - vfi) / 255.0, "interpolated_frames": len(mids)}


class AmtInterpolator:
    """AMT-S frame interpolation through VBench's vendored AMT code (``pip install vbench``) and its weights
    (``AMT-S.yaml`` + ``amt-s.pth``, the files VBench downloads to ``pretrained/amt_model``)."""

    def __init__(self, config_path: str, weights_path: str, device: str = "cpu"):
        try:
            import torch
            from omegaconf import OmegaConf
            from vbench.third_party.amt.utils.build_utils import build_from_cfg
            from vbench.third_party.amt.utils.utils import InputPadder, img2tensor, tensor2img
        except ImportError as e:
            raise ImportError("Motion Smoothness needs AMT-S's model code: `pip install vbench` (it vendors AMT) "
                              f"and omegaconf; missing {e.name!r}") from e
        from human_motion.eval.weights import load_weights

        self.torch, self.img2tensor, self.tensor2img, self.padder_cls = torch, img2tensor, tensor2img, InputPadder
        network_cfg = OmegaConf.load(config_path).network
        self.model = build_from_cfg(network_cfg)
        ckpt = load_weights(weights_path, "smoothness.amt_weights")  # AMT's amt-s.pth: {"state_dict": ...}
        self.model.load_state_dict(ckpt.get("state_dict", ckpt))
        self.model = self.model.to(device).eval()
        self.device = device
        self.embt = torch.tensor(0.5).float().view(1, 1, 1, 1).to(device)
        self.name = f"AMT-S ({weights_path})"

    def _scale(self, h: int, w: int) -> float:
        """VBench's resolution scale: 1 on CPU; on CUDA, from the card's memory (MotionSmoothness.initialization)."""
        torch = self.torch
        if self.device == "cpu":
            return 1.0
        vram = torch.cuda.get_device_properties(self.device).total_memory
        scale = 1024 * 512 / (h * w) * np.sqrt((vram - 2500 * 1024 ** 2) / (1500 * 1024 ** 2))
        scale = min(scale, 1.0)
        return 1 / np.floor(1 / np.sqrt(scale) * 16) * 16

    def __call__(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        torch = self.torch
        in0, in1 = self.img2tensor(a).to(self.device), self.img2tensor(b).to(self.device)
        scale = self._scale(*a.shape[:2])
        padder = self.padder_cls(in0.shape, int(16 / scale))
        in0, in1 = padder.pad(in0, in1)
        with torch.no_grad():
            mid = self.model(in0, in1, self.embt, scale_factor=scale, eval=True)["imgt_pred"]
        mid = padder.unpad(mid.cpu())
        return self.tensor2img(mid[0] if isinstance(mid, (list, tuple)) else mid)
