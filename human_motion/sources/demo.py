"""``demo``: the embedded default corpus, made on the spot from real face photos that installed packages ship.

Photos: NASA's astronaut portrait (scikit-image) and Grace Hopper (matplotlib), both public domain, and any others
named with their face box (``photo_files``: benchmarks/identity_control.py moves a dozen people). Each is framed
so the face fills about 45% of a 512x512 frame, then moved with known motion: a pan at several speeds (pixels per
sampled step at 4 fps, the units of the intensity), a zoom and an in-plane rotation; on request also vertical pans,
and zooms and rotations at several speeds. Also the framed photos as static samples, insightface's group photo
(several faces: rejected) and scikit-image's coffee cup (no face: rejected), so a first build shows both accepted
samples and recorded rejections.

With ``action_phrases`` each moving clip carries an action phrase that names its kind of motion and never its
speed (``ACTION_PHRASES``); the caption stage takes a source's phrase as the clip's action. That makes a corpus in
which the action type and the intensity vary independently (benchmarks/action_control.py).

The media are written once into ``<out>/_demo_media`` and reused by later runs.
"""

from __future__ import annotations

import pathlib
import re
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
MOTIONS = ("pan", "vertical", "zoom", "rotate")
UNITS = {"pan": "px_per_step", "vertical": "px_per_step", "zoom": "pct_per_step", "rotate": "deg_per_step"}
# The phrases of caption.box_actions / landmark_actions for the same motion, as a person would say them. Every sweep
# goes one way and back within a window, hence "from side to side", "up and down", "back and forth".
ACTION_PHRASES = {"pan": "moving from side to side", "vertical": "moving up and down",
                  "zoom": "moving back and forth", "rotate": "tilting head"}


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


def _photo_files(value) -> dict[str, tuple[pathlib.Path, tuple[float, float, float]]]:
    """``photo_files`` -> name -> (file, face): each entry ``{"path": ..., "face": [cx, cy, side]}``, the face centre
    and side as fractions of the image width, height and width (as ``_photos``). Names become file names."""
    if not isinstance(value, dict):
        raise ValueError(f"demo source: options.photo_files must map names to {{path, face}}, got {value!r}")
    out = {}
    for name, entry in value.items():
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}", str(name)):
            raise ValueError(f"demo source: photo name {name!r} must be letters, digits, _ or - (it names files)")
        try:
            path, face = pathlib.Path(entry["path"]), tuple(float(v) for v in entry["face"])
        except (TypeError, KeyError, ValueError):
            raise ValueError(f"demo source: options.photo_files.{name} must be {{path: FILE, face: [cx, cy, side]}}, "
                             f"got {entry!r}") from None
        if len(face) != 3 or not all(0 < v <= 1.5 for v in face):
            raise ValueError(f"demo source: options.photo_files.{name}.face must be 3 fractions of the image "
                             f"(centre x, centre y, side), got {list(face)}")
        if not path.is_file():
            raise ValueError(f"demo source: options.photo_files.{name}: no file {path}")
        out[str(name)] = (path, face)
    return out


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
    last window is whole). ``motion``: pan (horizontal) or vertical (px/step), zoom (%/step) or rotate (deg/step),
    at ``strength``. A pan bounces between +-max(3 * strength, 12) px from the centre, a zoom between 0.85x and
    1.15x, a rotation between +-12 degrees, each starting at the middle. With ``pan_sweep_steps`` N (the name is
    older than the other kinds; it sweeps any of them) the motion starts at one end (left, top, zoomed out, turned
    clockwise) and each sweep takes N steps (amplitude N * strength / 2), so with N = 8 every 16-step window is the
    same 8 steps one way, then 8 back, whatever the speed."""
    if motion not in MOTIONS:
        raise ValueError(f"demo motion must be one of {MOTIONS}, got {motion!r}")
    base, _ = _framing(img, face)
    n = int(round((windows * WINDOW_S + 0.25) * VIDEO_FPS))
    steps = np.arange(n) / (VIDEO_FPS / 4.0)  # time in sampled steps (4 fps)
    sweep = pan_sweep_steps

    def position(t: float, speed: float, amplitude: float) -> float:
        if sweep:
            return float(_triangle(np.array(t), speed, amplitude=sweep * speed / 2, from_left=True))
        return float(_triangle(np.array(t), speed, amplitude=amplitude))

    frames = []
    c = SIZE_PX / 2
    for t in steps:
        m = np.vstack([base, [0, 0, 1]])
        if motion in ("pan", "vertical"):
            d = position(t, strength, max(3 * strength, 12.0))
            dx, dy = (d, 0.0) if motion == "pan" else (0.0, d)
            m = np.array([[1, 0, dx], [0, 1, dy], [0, 0, 1]]) @ m
        elif motion == "zoom":
            z = 1 + position(t, strength / 100, 0.15)
            m = np.array([[z, 0, c - z * c], [0, z, c - z * c], [0, 0, 1]]) @ m
        else:
            angle = position(t, strength, 12.0)
            m = np.vstack([cv2.getRotationMatrix2D((c, c), float(angle), 1.0), [0, 0, 1]]) @ m
        frames.append(cv2.warpAffine(img, m[:2], (SIZE_PX, SIZE_PX), flags=cv2.INTER_LINEAR,
                                     borderMode=cv2.BORDER_REFLECT_101))
    return np.stack(frames)


def _speeds(options: dict, key: str, default) -> list[float]:
    """A speed list option; a single number is a list of one, and a single 0 means none (the older options'
    "0 to skip"). Within a list 0 is a clip that keeps still."""
    value = options.get(key, default)
    if isinstance(value, (int, float)):
        return [float(value)] if value else []
    try:
        speeds = [float(v) for v in value]
    except (TypeError, ValueError):
        raise ValueError(f"demo source: options.{key} must be a number or a list of numbers, got {value!r}") from None
    if any(v < 0 for v in speeds):
        raise ValueError(f"demo source: options.{key} must not be negative, got {value!r}")
    return speeds


class DemoSource:
    """Options: ``pan_px`` (pan speeds, pixels per step), ``zoom_pct`` and ``rotate_deg`` (one clip each per photo,
    0 to skip; or lists of speeds), ``vertical_px`` (vertical pan speeds, default none), ``windows`` (4-second
    windows per clip, default 1), ``photo_files`` (more photos: ``{name: {path, face: [cx, cy, side]}}``, see
    ``_photo_files``), ``photos`` (the subset to use, by name; default all), ``rejects`` (include the two photos that
    must be rejected, default true), ``pan_sweep_steps`` (see ``render``; default none: pans start at the centre
    and bounce at +-max(3 * speed, 12) px), ``sweep_steps`` (the same for every kind of motion, not pans alone),
    ``action_phrases`` (label each moving clip with its kind's phrase, ``ACTION_PHRASES``; default false)."""

    def __init__(self, name: str, cfg: SourceConfig, work_dir: pathlib.Path):
        self.name = name
        self.dir = pathlib.Path(cfg.root) if cfg.root else pathlib.Path(work_dir) / "_demo_media"
        self.speeds = {"pan": _speeds(cfg.options, "pan_px", [0, 2, 5, 10, 16]),
                       "vertical": _speeds(cfg.options, "vertical_px", []),
                       "zoom": _speeds(cfg.options, "zoom_pct", 3.0),
                       "rotate": _speeds(cfg.options, "rotate_deg", 3.0)}
        self.rejects = bool(cfg.options.get("rejects", True))
        self.windows = int(cfg.options.get("windows", 1))
        self.photos = cfg.options.get("photos")
        self.photo_files = _photo_files(cfg.options.get("photo_files") or {})
        self.action_phrases = bool(cfg.options.get("action_phrases", False))
        if self.windows < 1:
            raise ValueError("demo source: options.windows must be >= 1")
        # pan_sweep_steps sweeps the pans (the older option), sweep_steps every kind; 0 or none: no sweep.
        sweeps = {}
        for key in ("sweep_steps", "pan_sweep_steps"):
            value = cfg.options.get(key) or None
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"demo source: options.{key} must be an integer >= 1 (or 0 for none), got {value!r}")
            sweeps[key] = value
        self.sweeps = {m: sweeps["sweep_steps"] for m in MOTIONS}
        self.sweeps["pan"] = sweeps["pan_sweep_steps"] or sweeps["sweep_steps"]

    def specs(self) -> Iterator[ClipSpec]:
        self.dir.mkdir(parents=True, exist_ok=True)
        photos = {**_photos(), **self.photo_files}
        if not photos:
            raise RuntimeError("demo source: scikit-image and matplotlib sample photos are missing; reinstall them")
        for photo, (path, face) in sorted(photos.items()):
            if self.photos is not None and photo not in self.photos:
                continue
            img = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
            for motion, strength in ((m, v) for m in MOTIONS for v in self.speeds[m]):
                sweep = self.sweeps[motion]
                suffix = f"_x{self.windows}" if self.windows > 1 else ""
                suffix += f"_sweep{sweep}" if sweep else ""
                name = f"{photo}_{motion}_{strength:g}{suffix}.mp4"
                target = self.dir / name
                if not target.exists():
                    write_mp4(str(target), render(img, face, motion, strength, self.windows, sweep), VIDEO_FPS)
                labels = {"photo": photo, "motion": motion, UNITS[motion]: strength}
                if self.action_phrases:
                    labels["action"] = ACTION_PHRASES[motion]
                yield ClipSpec(self.name, name, str(target), labels=labels)
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
