"""Build throughput against decode-only throughput on the same clips, in one run; with ``--ray``, the Ray build
against the in-process build, and the driver's peak memory as the corpus grows.

    .venv/bin/python benchmarks/build_throughput.py [--clips DIR] [--ray [--ray-address auto]] [--repeat N]

Baseline: decoding exactly the frames a build samples (PyAV, same windows, no models). Then a full build of the same
clips (probe, decode with face detection and the crop, quality, faces, flow, caption, encode), in this process, so
the per-stage times are not mixed with Ray's start-up. ``--ray`` also times the same build through Ray (in-process
Ray, started and stopped inside the timing, as ``hm build`` does, or the running Ray at ``--ray-address``), the two
as ``hm build`` commands (each in a process of its own), and measures the driver process's peak resident
memory for builds of 8 and 32 clips (hard links of the dev clips) whose one shard holds every clip: the driver keeps
counts only, so the two should be the same. Prints seconds, clips/s and the ratios; medians with ``--repeat``.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from human_motion.config import load_config
from human_motion.console import filtered_stderr
from human_motion.engine.build import build
from human_motion.engine.config import BuildConfig
from human_motion.engine.ray_session import stop_ray
from human_motion.media import iter_sampled_frames, open_video, probe_video, window_times
from human_motion.sources.folder import FolderSource

REPO = pathlib.Path(__file__).resolve().parents[1]
DEV = REPO.parent / "shared" / "data" / "dev"


def decode_only(cfg: BuildConfig, paths: list[str]) -> tuple[float, int, float]:
    """Seconds to decode the sampled frames of every window of every clip, the number of windows, and the CPU
    seconds this process spent on it (every thread)."""
    d = cfg.decode
    windows = 0
    cpu = time.process_time()
    start = time.perf_counter()
    for path in paths:
        with open_video(path) as container:
            info = probe_video(container)
            times = window_times(0.0, info.duration_s, d.fps, d.num_frames, d.max_windows_per_clip)
            flat = [t for w in times for t in w]
            n = sum(1 for _ in iter_sampled_frames(container, 0.0, flat))
        windows += n // d.num_frames
    return time.perf_counter() - start, windows, time.process_time() - cpu


def timed_build(cfg: BuildConfig, out: str) -> tuple[float, dict, float]:
    """Wall seconds, the summary, and this process's CPU seconds (all that an in-process build burns; for a Ray
    build only the driver's)."""
    cpu = time.process_time()
    start = time.perf_counter()
    with filtered_stderr():  # as hm build's console: native libraries' log lines dropped
        summary = build(cfg, out)
    if cfg.ray.address != "local":
        stop_ray()  # part of what a Ray build costs, as hm build pays it
    return time.perf_counter() - start, summary, time.process_time() - cpu


def hm_build(clips: pathlib.Path, out: pathlib.Path, *sets: str) -> subprocess.Popen:
    """``hm build`` of the videos in ``clips`` as a user types it, in a process of its own."""
    cmd = [sys.executable, "-m", "human_motion.cli", "build", "--sources", f"folder={clips}", "--out", str(out),
           "--set", "sources.folder.options.images=false", "--set", "progress=off"]
    for item in sets:
        cmd += ["--set", item]
    # Its Ray is the one ``sets`` ask for (a Ray of its own by default), never one named in this shell's RAY_ADDRESS.
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=dict(env, PYTHONPATH=str(REPO)))


def finished(proc: subprocess.Popen) -> None:
    _, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"hm build failed (exit {proc.returncode}): {err[-2000:]}")


def command_seconds(clips: pathlib.Path, out: pathlib.Path, *sets: str) -> float:
    """Wall seconds of one ``hm build`` command, from process start to exit (imports, Ray's start and stop)."""
    start = time.perf_counter()
    finished(hm_build(clips, out, *sets))
    return time.perf_counter() - start


def driver_peak_mb(clips: pathlib.Path, out: pathlib.Path, per_shard: int) -> float:
    """Peak resident memory (MB) of an ``hm build`` driver process on Ray, sampled every 50 ms (its Ray workers are
    other processes and are not counted)."""
    import psutil

    proc = hm_build(clips, out, f"sink.clips_per_shard={per_shard}")
    peak = 0
    watched = psutil.Process(proc.pid)
    done = threading.Event()

    def sample():
        nonlocal peak
        while not done.is_set():
            try:
                peak = max(peak, watched.memory_info().rss)
            except psutil.Error:
                return
            time.sleep(0.05)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        finished(proc)
    finally:
        done.set()
        thread.join()
    return peak / 2**20


def linked_corpus(paths: list[str], folder: pathlib.Path, n: int) -> pathlib.Path:
    """``n`` clips as hard links of ``paths`` (repeated), so a bigger corpus costs no disk."""
    folder.mkdir(parents=True)
    for i in range(n):
        src = pathlib.Path(paths[i % len(paths)])
        os.link(src, folder / f"{i:03d}_{src.name}")
    return folder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", default=str(DEV), help="folder of videos (default: ../shared/data/dev)")
    ap.add_argument("--ray", action="store_true", help="also time the Ray build and measure the driver's memory")
    ap.add_argument("--repeat", type=int, default=1, help="runs of each build; medians are reported")
    ap.add_argument("--ray-address", default=None,
                    help="join this running Ray (e.g. auto, after `ray start --head`) instead of starting Ray in "
                         "each Ray build")
    ap.add_argument("--local-threads", type=int, default=None,
                    help="threads of the in-process build (ray.local_threads; default: the config's)")
    args = ap.parse_args()
    root = pathlib.Path(args.clips)
    base = {"sources": {"folder": {"root": str(root), "options": {"images": False}}},
            "ray": {"address": "local"}, "sink": {"clips_per_shard": 4}, "progress": "off"}
    if args.local_threads:
        base["ray"]["local_threads"] = args.local_threads
    cfg = load_config(BuildConfig, None, [], base=base)
    paths = [s.path for s in FolderSource("folder", cfg.sources["folder"], root).specs() if not s.reject_reason]
    print(f"clips: {len(paths)} videos from {root}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")

    decode_s, windows, decode_cpu = decode_only(cfg, paths)
    print(f"decode-only:    {decode_s:7.2f} s   {len(paths) / decode_s:6.2f} clips/s"
          f"   {windows / decode_s:6.2f} windows/s   CPU {decode_cpu:.2f} s")
    results = {"clips": len(paths), "windows": windows, "decode_only_s": decode_s, "decode_only_cpu_s": decode_cpu}
    local_s, local_cpu, ray_s = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeat):
            seconds, summary, cpu = timed_build(cfg, f"{tmp}/local{i}")
            local_s.append(seconds)
            local_cpu.append(cpu)
            if args.ray:  # interleaved, so both see the same machine load
                ray_cfg = load_config(BuildConfig, None, [f"ray.address={args.ray_address or 'null'}"], base=base)
                ray_s.append(timed_build(ray_cfg, f"{tmp}/ray{i}")[0])
        build_s = statistics.median(local_s)
        threads = cfg.ray.in_process_threads()
        print(f"build (local, {threads} thread{'s' if threads > 1 else ''}): "
              f"{build_s:7.2f} s   {len(paths) / build_s:6.2f} clips/s   "
              f"{summary['samples'] / build_s:6.2f} samples/s   ratio decode-only/build = {decode_s / build_s:.3f}")
        # Wall time moves with the machine's load (decoding gains more from an idle machine than the build does);
        # CPU seconds (all threads of this process) are the steadier measure of the work done.
        build_cpu = statistics.median(local_cpu)
        print(f"CPU seconds:    decode-only {decode_cpu:.2f} s, build {build_cpu:.2f} s, "
              f"ratio decode-only/build = {decode_cpu / build_cpu:.3f}")
        stages = summary["stage_seconds"]
        total = sum(v for k, v in stages.items() if "." not in k)
        print("where the time goes (worker seconds, share of the build's stage time):")
        for k, v in sorted(stages.items(), key=lambda kv: -kv[1]):
            print(f"  {k:14s} {v:7.2f} s  {100 * v / total:5.1f}%")
        results.update(build_local_s=build_s, build_local_runs=local_s, samples=summary["samples"],
                       local_threads=threads,
                       build_local_cpu_s=build_cpu, ratio_cpu_decode_over_build=decode_cpu / build_cpu,
                       stage_seconds=stages, ratio_decode_over_build=decode_s / build_s)
        if args.ray:
            median_ray = statistics.median(ray_s)
            print(f"build (Ray):    {median_ray:7.2f} s   {len(paths) / median_ray:6.2f} clips/s   "
                  f"ratio in-process/Ray wall time = {build_s / median_ray:.2f} (>= 1: Ray is at least as fast; "
                  + (f"joined the Ray at {args.ray_address})" if args.ray_address else
                     "includes Ray start-up and shutdown)"))
            # The same two builds as the commands a user types, each in a process of its own: the in-process
            # command pays its imports and model loading too, which the runs above (after the first) find done.
            cmd_local, cmd_ray = [], []
            for i in range(args.repeat):
                cmd_local.append(command_seconds(root, pathlib.Path(tmp) / f"cl{i}", "ray.address=local",
                                                 "sink.clips_per_shard=4",
                                                 f"ray.local_threads={threads}"))
                cmd_ray.append(command_seconds(root, pathlib.Path(tmp) / f"cr{i}", "sink.clips_per_shard=4",
                                               *([f"ray.address={args.ray_address}"] if args.ray_address else [])))
            cl, cr = statistics.median(cmd_local), statistics.median(cmd_ray)
            print(f"hm build commands: in-process {cl:7.2f} s, Ray {cr:7.2f} s, ratio in-process/Ray = "
                  f"{cl / cr:.2f} (>= 1: Ray is at least as fast)")
            results.update(command_local_s=cl, command_local_runs=cmd_local, command_ray_s=cr,
                           command_ray_runs=cmd_ray, ratio_command_local_over_ray=cl / cr)
            small = linked_corpus(paths, pathlib.Path(tmp) / "c8", 8)
            big = linked_corpus(paths, pathlib.Path(tmp) / "c32", 32)
            mb8 = driver_peak_mb(small, pathlib.Path(tmp) / "m8", 64)
            mb32 = driver_peak_mb(big, pathlib.Path(tmp) / "m32", 64)
            print(f"driver peak memory (Ray, one shard of every clip): 8 clips {mb8:.0f} MB, 32 clips {mb32:.0f} MB, "
                  f"ratio {mb32 / mb8:.2f}")
            results.update(build_ray_s=median_ray, build_ray_runs=ray_s, ratio_local_over_ray=build_s / median_ray,
                           driver_peak_mb_8=mb8, driver_peak_mb_32=mb32)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
