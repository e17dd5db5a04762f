"""Build throughput against decode-only throughput on the same clips, in one run.

    .venv/bin/python benchmarks/build_throughput.py [--clips DIR] [--ray]

Baseline: decoding exactly the frames a build samples (PyAV, same windows, no models). Then a full build of the same
clips (decode with face detection and cropping, faces, flow, caption, encode), in this process by default so the
per-stage times are not mixed with Ray start-up; ``--ray`` also times the Ray Data build. Prints clips/s, windows/s,
the ratio build/decode-only, and where the time goes (worker seconds per stage).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
os.environ.setdefault("GLOG_minloglevel", "2")

from human_motion.config import load_config  # noqa: E402
from human_motion.media import iter_sampled_frames, open_video, probe_video, window_times  # noqa: E402
from human_motion.engine.build import build  # noqa: E402
from human_motion.engine.config import BuildConfig  # noqa: E402
from human_motion.sources.folder import FolderSource  # noqa: E402

DEV = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "dev"


def decode_only(cfg: BuildConfig, paths: list[str]) -> tuple[float, int]:
    """Seconds to decode the sampled frames of every window of every clip, and the number of windows."""
    d = cfg.decode
    windows = 0
    start = time.perf_counter()
    for path in paths:
        with open_video(path) as container:
            info = probe_video(container)
            times = window_times(0.0, info.duration_s, d.fps, d.num_frames, d.max_windows_per_clip)
            flat = [t for w in times for t in w]
            n = sum(1 for _ in iter_sampled_frames(container, 0.0, flat))
        windows += n // d.num_frames
    return time.perf_counter() - start, windows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", default=str(DEV), help="folder of videos (default: ../shared/data/dev)")
    ap.add_argument("--ray", action="store_true", help="also time the Ray Data build")
    args = ap.parse_args()
    root = pathlib.Path(args.clips)
    base = {"sources": {"folder": {"root": str(root), "options": {"images": False}}},
            "ray": {"address": "local", "progress": False}, "sink": {"clips_per_shard": 4}}
    cfg = load_config(BuildConfig, None, [], base=base)
    paths = [s.path for s in FolderSource("folder", cfg.sources["folder"], root).specs() if not s.reject_reason]
    print(f"clips: {len(paths)} videos from {root}")

    decode_s, windows = decode_only(cfg, paths)
    print(f"decode-only:    {decode_s:7.2f} s   {len(paths) / decode_s:6.2f} clips/s   {windows / decode_s:6.2f} windows/s")
    results = {"clips": len(paths), "windows": windows, "decode_only_s": decode_s}
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        summary = build(cfg, f"{tmp}/local")
        build_s = time.perf_counter() - start
        print(f"build (local):  {build_s:7.2f} s   {len(paths) / build_s:6.2f} clips/s   "
              f"{summary['samples'] / build_s:6.2f} samples/s   ratio build/decode-only = {decode_s / build_s:.3f}")
        stages = summary["stage_seconds"]
        total = sum(v for k, v in stages.items() if "." not in k)
        print("where the time goes (worker seconds, share of the build's stage time):")
        for k, v in sorted(stages.items(), key=lambda kv: -kv[1]):
            print(f"  {k:14s} {v:7.2f} s  {100 * v / total:5.1f}%")
        results.update(build_local_s=build_s, samples=summary["samples"], stage_seconds=stages)
        if args.ray:
            ray_cfg = load_config(BuildConfig, None, ["ray.address=null"], base=base)
            start = time.perf_counter()
            build(ray_cfg, f"{tmp}/ray")
            ray_s = time.perf_counter() - start
            print(f"build (Ray):    {ray_s:7.2f} s   {len(paths) / ray_s:6.2f} clips/s   "
                  f"ratio build/decode-only = {decode_s / ray_s:.3f} (includes Ray start-up)")
            results["build_ray_s"] = ray_s
    print(json.dumps(results))


if __name__ == "__main__":
    main()
