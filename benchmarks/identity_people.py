"""The people of ``identity_control.py``: faces that installed packages ship or that ``../shared/data/dev`` holds,
made into photos with a known face box at run time (nothing here is committed media).

Each person is one photo and a face box (centre x, centre y, side as fractions of the image), the demo source's
``photo_files`` option. The astronaut and Grace Hopper are the demo's own; the six faces of insightface's group photo
are found by dlib's HOG detector (BlazeFace misses three of them) and each becomes a person of its own; the dev
videos give one still frame each (at 1 s), the dev photo one more, their faces found by BlazeFace.
"""

from __future__ import annotations

import pathlib

import numpy as np

DEV = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "dev"
# name -> where the face comes from: ("builtin",), ("dev_video", file), ("dev_photo", file), ("group", index from
# the left) or ("package", package, path parts). The order is the default order of the benchmark.
CATALOGUE = {
    "astronaut": ("builtin",),
    "hopper": ("builtin",),
    "lp_d10": ("dev_video", "lp_d10.mp4"),
    "lp_s20": ("dev_video", "lp_s20.mp4"),
    "lp_s29": ("dev_video", "lp_s29.mp4"),
    "aoc": ("dev_video", "sadtalker_WDA_AlexandriaOcasioCortez_000.mp4"),
    "tpsmm": ("dev_video", "tpsmm_driving.mp4"),
    "group_2": ("group", 2),
    "lp_d20": ("dev_video", "lp_d20.mp4"),
    "group_0": ("group", 0),
    "lp_d8": ("dev_photo", "lp_d8_photo.jpg"),
    "group_1": ("group", 1),
    "group_3": ("group", 3),
    "group_4": ("group", 4),
    "group_5": ("group", 5),
    "lp_d3": ("dev_video", "lp_d3.mp4"),
    "lp_d6": ("dev_video", "lp_d6.mp4"),
    "tom_hanks": ("package", "insightface", ("data", "images", "Tom_Hanks_54745.png")),
}
STILL_AT_S = 1.0  # the dev videos' still frame


def _rgb(path) -> np.ndarray:
    import cv2

    img = cv2.imread(str(path))
    if img is None:
        raise FileNotFoundError(path)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _still(video: pathlib.Path) -> np.ndarray:
    import av

    with av.open(str(video)) as container:
        frame = None
        for frame in container.decode(video=0):
            if frame.time is not None and frame.time >= STILL_AT_S:
                break
        return frame.to_ndarray(format="rgb24")


def _face(box, shape) -> list[float]:
    h, w = shape[:2]
    side = max(box[2] - box[0], box[3] - box[1])
    return [round(float((box[0] + box[2]) / 2 / w), 4), round(float((box[1] + box[3]) / 2 / h), 4),
            round(float(side / w), 4)]


def gather(names: list[str], folder: pathlib.Path) -> dict[str, dict]:
    """``{name: {"path", "face"}}`` for the demo source's ``photo_files`` (the built-in photos are left to the demo);
    stills are written to ``folder``. Raises with the missing file's name when a face cannot be had."""
    import cv2

    from human_motion.backends.face_models import DlibDetector, MediapipeDetector
    from human_motion.media import package_file

    unknown = [n for n in names if n not in CATALOGUE]
    if unknown:
        raise ValueError(f"unknown people {unknown}; choose from {list(CATALOGUE)}")
    folder.mkdir(parents=True, exist_ok=True)
    blaze, group = MediapipeDetector(0.3), None
    out = {}
    for name in names:
        where = CATALOGUE[name]
        if where[0] == "builtin":
            continue
        if where[0] == "group":
            path = package_file("insightface", "data", "images", "t1.jpg")
            if path is None:
                raise FileNotFoundError("insightface's data/images/t1.jpg (pip install insightface)")
            if group is None:
                dets = [d for d in DlibDetector(0.3, upsample=1).detect(_rgb(path)) if d.score >= 0.8]
                group = sorted((d.box for d in dets), key=lambda b: float(b[0]))
            out[name] = {"path": str(path), "face": _face(group[where[1]], _rgb(path).shape)}
            continue
        if where[0] == "package":
            path = package_file(where[1], *where[2])
            if path is None:
                raise FileNotFoundError(f"{where[1]}'s {'/'.join(where[2])}")
            img = _rgb(path)
        elif where[0] == "dev_photo":
            path = DEV / where[1]
            img = _rgb(path)
        else:
            img = _still(DEV / where[1])
            path = folder / f"{name}.jpg"
            cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
        dets = blaze.detect(img)
        if not dets:
            raise RuntimeError(f"no face found in {path}")
        box = max(dets, key=lambda d: d.score).box
        out[name] = {"path": str(path), "face": _face(box, img.shape)}
    blaze.close()
    return out
