"""What the training loader pays to decode a shard clip: ``model.data._decode_mp4`` as it is (the window's frames
only, one FFmpeg thread) against the way it was until 2026-12-07 (every frame of the clip, FFmpeg's default
threads), in the same process, interleaved, on synthetic clips of the shards' layout (H.264 by the build's
``media.encode_mp4``, 16 frames); medians and their ratio, of the wall time and of the process's CPU time (all its
threads: what a loader decoding ahead on its own threads pays), and whether the pixels are the same.

    .venv/bin/python benchmarks/loader_decode.py [--sizes 128,512] [--frames 16] [--window 8] [--repeats 7]
"""

from __future__ import annotations

import argparse
import io
import pathlib
import statistics
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import numpy as np

from human_motion.media import encode_mp4
from human_motion.model.data import _decode_mp4


def decode_before(data: bytes, window: int) -> np.ndarray:
    """The baseline: every frame with FFmpeg's default threading, the window cut afterwards."""
    import av

    with av.open(io.BytesIO(data)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    return np.stack(frames)[:window]


def clips(size: int, frames: int, count: int) -> list[bytes]:
    """``count`` smooth textures panning a few pixels a frame, as the demo source's clips do."""
    import cv2

    out = []
    for seed in range(count):
        rng = np.random.default_rng(seed)
        base = cv2.GaussianBlur((rng.random((size, size, 3)) * 255).astype(np.uint8), (0, 0), size / 40)
        out.append(encode_mp4(np.stack([np.roll(base, 2 * i, axis=1) for i in range(frames)]), fps=4))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="128,512", help="frame sides to measure (128: the recipes' shards)")
    parser.add_argument("--frames", type=int, default=16, help="frames stored per clip (the build's windows: 16)")
    parser.add_argument("--window", type=int, default=8, help="frames a training sample takes (data.num_frames)")
    parser.add_argument("--clips", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    for size in (int(s) for s in args.sizes.split(",")):
        data = clips(size, args.frames, args.clips)
        same = all(np.array_equal(decode_before(d, args.window), _decode_mp4(d, max_frames=args.window))
                   for d in data)
        times, cpu = {"before": [], "now": []}, {"before": [], "now": []}
        for _ in range(args.repeats):  # interleaved, so load on a shared machine falls on both alike
            for name, fn in (("before", lambda d: decode_before(d, args.window)),
                             ("now", lambda d: _decode_mp4(d, max_frames=args.window))):
                t0, c0 = time.perf_counter(), time.process_time()
                for d in data:
                    fn(d)
                times[name].append((time.perf_counter() - t0) / len(data) * 1000)
                cpu[name].append((time.process_time() - c0) / len(data) * 1000)
        (before, now), (cpu_before, cpu_now) = ([statistics.median(t[k]) for k in ("before", "now")]
                                                for t in (times, cpu))
        print(f"{size} px, {args.window} of {args.frames} frames: wall {before:.1f} -> {now:.1f} ms a clip (ratio "
              f"{now / before:.2f}), CPU {cpu_before:.1f} -> {cpu_now:.1f} ms (ratio {cpu_now / cpu_before:.2f}); "
              f"same pixels: {same}", flush=True)


if __name__ == "__main__":
    main()
