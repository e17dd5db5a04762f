"""Prepare, here, what ``gpu_check.py`` needs on the GPU machine, under ``.gpu_check/`` (git-ignored); check it fits.

    .venv/bin/python benchmarks/prepare_gpu_check.py              # wheels + 3 dev windows; prints the sizes

1. ``wheels/``: the Python packages the GPU machine's image lacks (the device tool's KINDS.md lists what it has):
   diffusers and importlib_metadata, ptflops, webdataset and braceexpand, at the versions installed in the Python
   that runs this script (so the check runs what the tests here ran), as CPython 3.12 x86-64 wheels
   (``pip download --only-binary=:all: --no-deps``). Ray, PyAV and mediapipe are too large to travel and the check
   does not need them.
2. ``frames.npy``: ``--windows`` 16-frame 512x512 windows (n, 16, 512, 512, 3) uint8, the first window of each dev
   clip (``../shared/data/dev``) that the build's decode stage keeps: the face-centred crop the flow stage sees.
3. ``manifest.json``: what was prepared and from which commit.

Everything that travels (the working tree: tracked and untracked-not-ignored files, plus the carried folder) must stay
under 64 MiB; the script prints the total and exits 1 above it. The device call is in DEVELOPERS.md.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import shutil
import subprocess
import sys
from importlib.metadata import version

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

DEV = REPO.parent / "shared" / "data" / "dev"
WHEELS = ("diffusers", "importlib_metadata", "ptflops", "webdataset", "braceexpand")
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
LIMIT_MIB = 64.0  # the device tool's limit on what travels with a call
VIDEO = (".mp4", ".mov", ".mkv", ".webm", ".avi")


def download_wheels(folder: pathlib.Path) -> list[str]:
    """CPython 3.12 wheels of WHEELS at this Python's installed versions; the folder holds nothing else (two
    versions of one package stop the install there)."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    pins = [f"{name}=={version(name)}" for name in WHEELS]
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:", "--python-version",
           "3.12", "--implementation", "cp", *[f"--platform={p}" for p in PLATFORMS], "-d", str(folder), *pins]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        errors = [line for line in proc.stderr.splitlines() if "is ignored" not in line]
        raise SystemExit(f"pip download failed for {pins}:\n" + "\n".join(errors[-10:]))
    return sorted(p.name for p in folder.glob("*.whl"))


def decode_windows(clips: list[pathlib.Path], count: int) -> tuple[np.ndarray, list[str]]:
    """The first window of each clip that the build's decode stage keeps, until ``count`` are found.

    The one place this script touches the stage API (the test suite runs it on one dev clip)."""
    from human_motion.config import load_config
    from human_motion.engine.executors import initial_record
    from human_motion.stages.decode import Decode, DecodeConfig
    from human_motion.stages.probe import Probe
    from human_motion.types import ClipSpec, Row

    section = load_config(DecodeConfig, None, ["max_windows_per_clip=1"])  # the decode section, as hm build's
    probe, decode = Probe(section), Decode(section)
    found, names = [], []
    for i, path in enumerate(clips):
        spec = ClipSpec(source="dev", clip_id=path.stem, path=str(path))
        rows = decode.process_rows(probe.process_rows([Row(0, i, 1, initial_record(spec))]))
        kept = [r for r in rows if r.ok and r.frames is not None]
        if kept:
            found.append(kept[0].frames)
            names.append(path.name)
        else:
            print(f"[prepare] {path.name}: no window kept ({rows[0].record.get('status')})")
        if len(found) == count:
            break
    if len(found) < count:
        raise SystemExit(f"only {len(found)} of {count} windows could be decoded from {clips[0].parent}")
    return np.stack(found), names


def travelling_bytes(extra: pathlib.Path) -> tuple[int, int]:
    """(bytes of the working tree that a device call sends, bytes of ``extra``)."""
    listed = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            capture_output=True, check=True).stdout.split(b"\0")
    tree = sum((REPO / name.decode()).stat().st_size for name in listed if name and (REPO / name.decode()).is_file())
    carried = sum(p.stat().st_size for p in extra.rglob("*") if p.is_file()) if extra.exists() else 0
    return tree, carried


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(REPO / ".gpu_check"), help="the folder to carry (git-ignored)")
    ap.add_argument("--clips", default=str(DEV), help="folder of dev videos")
    ap.add_argument("--windows", type=int, default=3, help="windows to decode (12 MiB each)")
    ap.add_argument("--no-wheels", action="store_true", help="frames only (no package download)")
    args = ap.parse_args(argv)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    manifest = {"commit": subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True,
                                         text=True).stdout.strip()}
    if not args.no_wheels:
        manifest["wheels"] = download_wheels(out / "wheels")
        print(f"[prepare] wheels: {', '.join(manifest['wheels'])}")
    clips = sorted(p for p in pathlib.Path(args.clips).glob("*") if p.suffix.lower() in VIDEO)
    if not clips:
        raise SystemExit(f"{args.clips}: no videos ({', '.join(VIDEO)}); pass --clips with the dev clips")
    frames, names = decode_windows(clips, args.windows)
    np.save(out / "frames.npy", frames)
    manifest.update(frames_shape=list(frames.shape), clips=names)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    print(f"[prepare] frames.npy: {frames.shape} from {', '.join(names)}")
    tree, carried = travelling_bytes(out)
    total = (tree + carried) / 2**20
    print(f"[prepare] travels: working tree {tree / 2**20:.1f} MiB + {out.name}/ {carried / 2**20:.1f} MiB = "
          f"{total:.1f} MiB of {LIMIT_MIB:.0f} MiB")
    if total > LIMIT_MIB:
        print("[prepare] too large for a device call: use fewer --windows, or ignore large untracked files",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
