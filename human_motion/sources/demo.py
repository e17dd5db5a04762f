"""``demo``: the embedded default corpus, made on the spot from real face photos that installed packages ship.

Photos: NASA's astronaut portrait (scikit-image) and Grace Hopper (matplotlib), both public domain. Each is framed
so the face fills about 45% of a 512x512 frame, then moved with known motion: a pan at several speeds (pixels per
sampled step at 4 fps, the units of the intensity), a zoom and an in-plane rotation. Also the framed photos as
static samples, insightface's group photo (several faces: rejected) and scikit-image's coffee cup (no face:
rejected), so a first build shows both accepted samples and recorded rejections.

The media are written once into ``<out>/_demo_media`` and reused by later runs.
"""

from __future__ import annotations

import pathlib
import shutil
from collections.abc import Iterator

import cv2
import numpy as np

from human_motion.media import package_file, write_mp4
from human_motion.sources.config import SourceConfig
from human_motion.types import ClipSpec

SIZE_PX = 512
VIDEO_FPS = 8.0  # twice the sampling rate, so the decoder really subsamples
WINDOW_S = 4.0  # one 16-frame window at 4 fps
FACE_FILL = 0.45  # face box side / frame side after framing


def _photos() -> dict[str, tuple[pathlib.Path, tuple[float, float, float]]]:
    """name -> (file, face centre x, centre y, side as fractions of the image width/height/width)."""
    found = {}
    astronaut = package_file("skimage", "data", "astronaut.png")
    if astronaut:  # face box measured with BlazeFace: x 0.34-0.54, y 0.15-0.35 of 512x512
        found["astronaut"] = (astronaut, (0.44, 0.255, 0.195))
    hopper = package_file("matplotlib", "mpl-data", "sample_data", "grace_hopper.jpg")
    if hopper:  # 512x600; face box x 0.33-0.72, y 0.23-0.57
        found["hopper"] = (hopper, (0.525, 0.40, 0.385))
    return found


def _triangle(t: np.ndarray, speed: float, amplitude: float, from_left: bool = False) -> np.ndarray:
    """Position at time t (in steps) moving at ``speed`` per step, bouncing between -amplitude and +amplitude;
    starting at 0 moving right, or (``from_left``) at -amplitude moving right."""
    if speed == 0:
        return np.zeros_like(t)
    period = 4 * amplitude / speed
    phase = ((t + 0.75 * period * from_left) % period) / period
    return amplitude * np.where(phase < 0.25, 4 * phase, np.where(phase < 0.75, 2 - 4 * phase, 4 * phase - 4))


def _framing(img: np.ndarray, face: tuple[float, float, float]) -> tuple[np.ndarray, float]:
    """Affine (2x3) from photo to a 512 frame with the face centred and FACE_FILL of the side."""
    h, w = img.shape[:2]
    cx, cy, side = face[0] * w, face[1] * h, face[2] * w
    scale = SIZE_PX * FACE_FILL / side
    m = np.array([[scale, 0, SIZE_PX / 2 - scale * cx], [0, scale, SIZE_PX / 2 - scale * cy]], np.float64)
    return m, scale


def render(img: np.ndarray, face: tuple[float, float, float], motion: str, strength: float,
           windows: int = 1, pan_sweep_steps: int | None = None) -> np.ndarray:
    """Frames (t, 512, 512, 3) of one demo clip of ``windows`` 4-second windows (plus a quarter second, so the
    last window is whole). ``strength``: pan px/step, zoom %/step, rotate deg/step. A pan bounces between
    +-max(3 * strength, 12) px from the centre, starting there; with ``pan_sweep_steps`` N it starts at the left
    end and each sweep takes N steps (amplitude N * strength / 2), so with N = 8 every 16-step window is the same
    8 steps right, then 8 left, whatever the speed."""
    base, _ = _framing(img, face)
    n = int(round((windows * WINDOW_S + 0.25) * VIDEO_FPS))
    steps = np.arange(n) / (VIDEO_FPS / 4.0)  # time in sampled steps (4 fps)
    frames = []
    for t in steps:
        m = np.vstack([base, [0, 0, 1]])
        c = SIZE_PX / 2
        if motion == "pan":
            if pan_sweep_steps:
                dx = _triangle(np.array(t), strength, amplitude=pan_sweep_steps * strength / 2, from_left=True)
            else:
                dx = _triangle(np.array(t), strength, amplitude=max(3 * strength, 12.0))
            m = np.array([[1, 0, dx], [0, 1, 0], [0, 0, 1]]) @ m
        elif motion == "zoom":
            z = 1 + _triangle(np.array(t), strength / 100, amplitude=0.15)
            m = np.array([[z, 0, c - z * c], [0, z, c - z * c], [0, 0, 1]]) @ m
        elif motion == "rotate":
            angle = _triangle(np.array(t), strength, amplitude=12.0)
            m = np.vstack([cv2.getRotationMatrix2D((c, c), float(angle), 1.0), [0, 0, 1]]) @ m
        frames.append(cv2.warpAffine(img, m[:2], (SIZE_PX, SIZE_PX), flags=cv2.INTER_LINEAR,
                                     borderMode=cv2.BORDER_REFLECT_101))
    return np.stack(frames)


class DemoSource:
    """Options: ``pan_px`` (pan speeds, pixels per step), ``zoom_pct`` and ``rotate_deg`` (one clip each per photo,
    0 to skip), ``windows`` (4-second windows per clip, default 1), ``photos`` (subset of astronaut, hopper),
    ``rejects`` (include the two photos that must be rejected, default true), ``pan_sweep_steps`` (see ``render``;
    default none: pans start at the centre and bounce at +-max(3 * speed, 12) px)."""

    def __init__(self, name: str, cfg: SourceConfig, work_dir: pathlib.Path):
        self.name = name
        self.dir = pathlib.Path(cfg.root) if cfg.root else pathlib.Path(work_dir) / "_demo_media"
        self.pan_px = [float(v) for v in cfg.options.get("pan_px", [0, 2, 5, 10, 16])]
        self.zoom_pct = float(cfg.options.get("zoom_pct", 3.0))
        self.rotate_deg = float(cfg.options.get("rotate_deg", 3.0))
        self.rejects = bool(cfg.options.get("rejects", True))
        self.windows = int(cfg.options.get("windows", 1))
        self.photos = cfg.options.get("photos")
        sweep = cfg.options.get("pan_sweep_steps")
        self.pan_sweep_steps = int(sweep) if sweep else None
        if self.windows < 1:
            raise ValueError("demo source: options.windows must be >= 1")
        if self.pan_sweep_steps is not None and self.pan_sweep_steps < 1:
            raise ValueError("demo source: options.pan_sweep_steps must be >= 1")

    def specs(self) -> Iterator[ClipSpec]:
        self.dir.mkdir(parents=True, exist_ok=True)
        photos = _photos()
        if not photos:
            raise RuntimeError("demo source: scikit-image and matplotlib sample photos are missing; reinstall them")
        for photo, (path, face) in sorted(photos.items()):
            if self.photos is not None and photo not in self.photos:
                continue
            img = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
            clips = [("pan", v) for v in self.pan_px]
            clips += [("zoom", self.zoom_pct)] if self.zoom_pct > 0 else []
            clips += [("rotate", self.rotate_deg)] if self.rotate_deg > 0 else []
            for motion, strength in clips:
                suffix = f"_x{self.windows}" if self.windows > 1 else ""
                if motion == "pan" and self.pan_sweep_steps:
                    suffix += f"_sweep{self.pan_sweep_steps}"
                name = f"{photo}_{motion}_{strength:g}{suffix}.mp4"
                target = self.dir / name
                if not target.exists():
                    write_mp4(str(target), render(img, face, motion, strength, self.windows, self.pan_sweep_steps),
                              VIDEO_FPS)
                unit = {"pan": "px_per_step", "zoom": "pct_per_step", "rotate": "deg_per_step"}[motion]
                yield ClipSpec(self.name, name, str(target),
                               labels={"photo": photo, "motion": motion, unit: strength})
            still = self.dir / f"{photo}_portrait.jpg"
            if not still.exists():
                m, _ = _framing(img, face)
                frame = cv2.warpAffine(img, m, (SIZE_PX, SIZE_PX), borderMode=cv2.BORDER_REFLECT_101)
                cv2.imwrite(str(still), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
            yield ClipSpec(self.name, still.name, str(still), static=True, labels={"photo": photo})
        if self.rejects:
            for name, (package, parts) in {
                "group_photo.jpg": ("insightface", ("data", "images", "t1.jpg")),
                "no_face_coffee.png": ("skimage", ("data", "coffee.png")),
            }.items():
                src = package_file(package, *parts)
                if src is None:
                    continue
                target = self.dir / name
                if not target.exists():
                    shutil.copyfile(src, target)
                yield ClipSpec(self.name, name, str(target), static=True, labels={"expect": "rejected"})
