"""RAFT throughput (frame pairs per second) through the flow stage's own code path, against DIS in the same run.

    .venv/bin/python benchmarks/raft_throughput.py                          # CUDA: 512x512, fp32 and fp16, both sizes
    .venv/bin/python benchmarks/raft_throughput.py --px 128 --pairs 3 --iters 2 --random-weights --repeats 1  # CPU

Frames: a 16-frame window (15 pairs) of the demo's pan of skimage's astronaut photo, moving a known 6 px per step at
512 (so with pretrained weights each backend's intensity can be read against 6.0). Each precision runs ``RaftFlow``
as the build does (all pairs of a window in one batch, ``flow.raft_iters`` updates), after one warm-up call; CUDA
time is synchronised. The baseline is OpenCV DIS (the default CPU backend) on the same frames at the same size. For
fp16/bf16 the table also gives the mean end-point error against fp32 on the same pairs (pixels at ``--px``), so the
speed-up can be weighed against what it changes. ``--random-weights`` saves a random-init state dict to a temporary
file (no download; numbers are then timing only). ``measure`` is also what ``gpu_check.py`` runs on the GPU machine.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import platform
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import numpy as np

from human_motion.backends.optical_flow import OpenCVFlow, RaftFlow
from human_motion.engine.config import FlowConfig
from human_motion.metrics import compute_flow_intensity, flow_magnitude

FACE = (0.44, 0.255, 0.195)
STEP_PX = 6.0  # motion per sampled step at 512


def window(px: int, pairs: int) -> np.ndarray:
    """pairs + 1 frames (px, px) of a pan at STEP_PX per step (at 512 scale)."""
    import cv2
    import skimage.data

    from human_motion.sources.demo import render

    frames = render(skimage.data.astronaut(), FACE, "pan", STEP_PX)[::2][: pairs + 1]
    if frames.shape[1] != px:
        frames = np.stack([cv2.resize(f, (px, px), interpolation=cv2.INTER_AREA) for f in frames])
    return np.ascontiguousarray(frames)


def timed(flow, frames: np.ndarray, repeats: int, sync) -> tuple[float, np.ndarray]:
    """Seconds per call (mean over repeats, after one warm-up call) and the last flows."""
    out = flow(frames)
    sync()
    start = time.perf_counter()
    for _ in range(repeats):
        out = flow(frames)
    sync()
    return (time.perf_counter() - start) / repeats, out


def intensity_at_512(flows: np.ndarray, px: int) -> float:
    mags = np.stack([flow_magnitude(f) for f in flows]) * (512 / px)
    return float(compute_flow_intensity(mags)[0])


def random_weights(backend: str, folder: str) -> str:
    """A random-init state dict of ``backend`` saved under ``folder`` (no download); its path."""
    import torch
    from torchvision.models import optical_flow

    torch.manual_seed(0)
    path = str(pathlib.Path(folder) / f"{backend}.pth")
    torch.save(getattr(optical_flow, backend)(weights=None).state_dict(), path)
    return path


def measure(frames: np.ndarray, backends: list[str], precisions: list[str], iters: int, repeats: int, device: str,
            weights: str | None = None, random_init: bool = False, deadline: float | None = None) -> dict:
    """DIS on the CPU, then each RAFT backend x precision through ``RaftFlow`` on ``frames`` (t, px, px, 3): pairs/s,
    ratio to DIS, EPE against fp32 (pixels at px), intensity at 512 scale, peak GPU memory. Runs stop once
    ``time.monotonic()`` passes ``deadline`` (the rest are listed under ``not_run``)."""
    import torch

    cuda = device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    px, pairs = frames.shape[1], len(frames) - 1
    dis_s, dis_flows = timed(OpenCVFlow("dis"), frames, repeats, lambda: None)
    results = {"px": px, "pairs": pairs, "iters": iters, "repeats": repeats, "random_weights": random_init,
               "baseline": {"backend": "dis", "device": "cpu", "pairs_per_s": pairs / dis_s,
                            "intensity": intensity_at_512(dis_flows, px)}, "runs": [], "not_run": []}
    with tempfile.TemporaryDirectory() as tmp:
        for backend in backends:
            path = random_weights(backend, tmp) if random_init else weights
            reference = None
            for precision in precisions:
                if deadline is not None and time.monotonic() > deadline:
                    results["not_run"].append(f"{backend} {precision}")
                    continue
                cfg = FlowConfig(backend=backend, raft_weights=path, raft_iters=iters, device=device,
                                 precision=precision, work_px=max(128, px))
                flow = RaftFlow(cfg)
                if cuda:
                    torch.cuda.reset_peak_memory_stats()
                seconds, flows = timed(flow, frames, repeats, sync)
                memory = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
                if precision == "fp32":
                    reference = flows
                epe = float(np.linalg.norm(flows - reference, axis=-1).mean()) if reference is not None else None
                results["runs"].append({
                    "backend": backend, "precision": precision, "pairs_per_s": pairs / seconds,
                    "vs_dis": dis_s / seconds, "epe_vs_fp32_px": epe, "intensity": intensity_at_512(flows, px),
                    "peak_gpu_gib": memory})
                del flow
    return results


def print_table(results: dict) -> None:
    base = results["baseline"]
    print(f"{'backend':16} {'prec':5} {'pairs/s':>9} {'x DIS':>7} {'EPE vs fp32':>12} {'intensity@512':>14} "
          f"{'peak GiB':>9}")
    print(f"{'dis (baseline)':16} {'-':5} {base['pairs_per_s']:9.3g} {1.0:7.3g} {'-':>12} {base['intensity']:14.2f} "
          f"{'-':>9}")
    for r in results["runs"]:
        epe = "-" if r["epe_vs_fp32_px"] is None else f"{r['epe_vs_fp32_px']:.3f}"
        mem = "-" if r["peak_gpu_gib"] is None else f"{r['peak_gpu_gib']:.2f}"
        print(f"{r['backend']:16} {r['precision']:5} {r['pairs_per_s']:9.3g} {r['vs_dis']:7.3g} {epe:>12} "
              f"{r['intensity']:14.2f} {mem:>9}")


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backends", default="raft_small,raft_large")
    ap.add_argument("--precisions", default=None, help="default: fp32,fp16 on CUDA; fp32,bf16 on CPU")
    ap.add_argument("--px", type=int, default=512, help="working resolution (flow.work_px)")
    ap.add_argument("--pairs", type=int, default=15, help="frame pairs per call (15: one 16-frame window)")
    ap.add_argument("--iters", type=int, default=12, help="flow.raft_iters")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--weights", default=None, help="local state dict for a single backend (flow.raft_weights)")
    ap.add_argument("--random-weights", action="store_true", help="random-init weights saved to a temp file")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args(argv)

    import torch

    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    cuda = device.startswith("cuda")
    precisions = (args.precisions or ("fp32,fp16" if cuda else "fp32,bf16")).split(",")
    name = torch.cuda.get_device_name() if cuda else f"CPU ({platform.processor() or platform.machine()}, " \
                                                        f"{torch.get_num_threads()} threads)"
    print(f"device: {name}; torch {torch.__version__}; {args.pairs} pairs of {args.px}x{args.px}, "
          f"{args.iters} RAFT iterations, {args.repeats} timed repeats")
    results = measure(window(args.px, args.pairs), args.backends.split(","), precisions, args.iters, args.repeats,
                      device, args.weights, args.random_weights)
    results["device"] = name
    print_table(results)
    print(f"(known motion: {STEP_PX} px per step at 512; with --random-weights RAFT's flow is meaningless)")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    main()
