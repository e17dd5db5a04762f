"""Hostile and odd input through `hm build`: rotated phone media, a decompression bomb, files that are not what
their names say, links out of the root, FIFOs, and corpus metadata built to break parsers. Each ends as a sample
or a rejection row with a reason that says what is wrong, or, when the run cannot go on, one line and exit 2;
the good clips beside them are still built, and nothing hangs."""

from __future__ import annotations

import json
import os
import pathlib
from fractions import Fraction

import numpy as np
import pytest

from corpora import FAST_SETS, face_frames, read_rejects, read_samples, write_face_video
from human_motion.cli import main
from human_motion.sources.celebv_hq import CelebVHQSource
from human_motion.sources.config import SourceConfig
from tests.test_media import bomb_png

av = pytest.importorskip("av")


def write_video(path: pathlib.Path, frames: np.ndarray, ccw_deg: float | None = None) -> None:
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=Fraction(4))
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        if ccw_deg is not None:
            stream.set_display_rotation(ccw_deg)
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def write_folder(root: pathlib.Path) -> dict[str, str | None]:
    """A folder of odd media; clip id -> the reason it must be rejected for (None: a sample)."""
    from PIL import Image

    root.mkdir(parents=True)
    upright = face_frames(160, 224, 2.0, (0.1, 0.05, 0.9, 0.95))  # a portrait scene
    sideways = np.rot90(upright, k=1, axes=(1, 2))  # as a phone's sensor stores it
    write_face_video(root / "good.mp4")
    write_video(root / "phone.mp4", sideways, ccw_deg=-90)  # with the matrix that turns it upright
    write_video(root / "sideways.mp4", sideways)  # the same pixels, no matrix: the face lies on its side
    exif = Image.Exif()
    exif[0x0112] = 6  # "turn 90 degrees clockwise to show"
    Image.fromarray(np.ascontiguousarray(sideways[0])).save(root / "photo_exif.jpg", exif=exif, quality=95)
    (root / "bomb.png").write_bytes(bomb_png(20000, 20000))
    (root / "photo.mp4").write_bytes(bomb_png(64, 64))  # a PNG under a video name
    (root / "named.mp4").mkdir()
    (root / "passwd.mp4").symlink_to("/etc/passwd")
    os.mkfifo(root / "pipe.mp4")
    (root / "dangling.mp4").symlink_to(root / "gone.mp4")
    return {"good.mp4": None, "phone.mp4": None, "photo_exif.jpg": None, "sideways.mp4": "low_confidence",
            "bomb.png": "image_too_large", "photo.mp4": "not_a_video", "named.mp4": "not_a_file",
            "passwd.mp4": "outside_root", "pipe.mp4": "not_a_file", "dangling.mp4": "missing_file"}


def celebv_row(ytb_id: str, **extra) -> dict:
    return dict({"ytb_id": ytb_id, "duration": {"start_sec": 0.0, "end_sec": 2.0},
                 "bbox": {"top": 0.1, "bottom": 0.9, "left": 0.1, "right": 0.9}}, **extra)


def nested_labels(depth: int) -> dict:
    label: object = "happy"
    for _ in range(depth):
        label = [{"emotion": label, "start_sec": 0.0, "end_sec": 1.0}]
    return {"emotion": {"sep_flag": True, "labels": label}}


def write_celebvhq(root: pathlib.Path) -> dict[str, str | None]:
    write_face_video(root / "clips" / "ytGOODGOOD1_0.mp4")
    rows = {"ytGOODGOOD1_0": celebv_row("ytGOODGOOD1", attributes={"emotion": "happy"}),
            "ytHUGEHUGE1_0": celebv_row("ytHUGEHUGE1", duration={"start_sec": 0.0, "end_sec": 12345}),
            "ytDEEPDEEP1_0": celebv_row("ytDEEPDEEP1", attributes=nested_labels(300)),
            "ytNULNULNUL_0": celebv_row("ytNULNULNUL", attributes={"emotion": "hap\x00py"})}
    meta = {"emotion_mapping": ["neutral\x00", *["x"] * 7]}  # control characters: the published list is used
    text = json.dumps({"meta_info": meta, "clips": rows}).replace("12345", "9" * 5000)  # a 5,000-digit number
    (root / "celebvhq_info.json").write_text(text)
    return {"ytGOODGOOD1_0": None, "ytHUGEHUGE1_0": "bad_value", "ytDEEPDEEP1_0": "bad_row",
            "ytNULNULNUL_0": "bad_labels"}


def write_vfhq(root: pathlib.Path) -> dict[str, str | None]:
    good, dangling, fifo = (f"Clip+yt{k:_<9}+P0+C0+F0-9" for k in ("GOOD", "DANGLING", "FIFO"))
    (root / "meta").mkdir(parents=True)
    (root / "meta" / f"{good}.txt").write_text(
        "Video ID: ytGOOD_____\nH: 160\nW: 160\nFPS: 4.0\n000001 16 8 144 152\nCROP_BBOX: 0 0 160 160\n")
    write_face_video(root / "clips" / f"{good}.mp4")
    (root / "meta" / f"{dangling}.txt").symlink_to(root / "meta" / "deleted.txt")
    os.mkfifo(root / "meta" / f"{fifo}.txt")  # read, it would hang the build forever
    return {good: None, dangling: "missing_file", fifo: "not_a_file"}


def test_hostile_inputs_become_rows_with_reasons_and_good_clips_samples(tmp_path):
    expect = write_folder(tmp_path / "folder")
    expect.update(write_celebvhq(tmp_path / "celebvhq"))
    expect.update(write_vfhq(tmp_path / "vfhq"))
    (tmp_path / "hm.toml").write_text("".join(f'[sources.{name}]\nroot = "{tmp_path / name.replace("-", "")}"\n'
                                              for name in ("folder", "celebv-hq", "vfhq")))
    # Over the sideways face's detector confidence (~0.73), under an upright face's (~0.91).
    sets = dict(FAST_SETS, **{"ray.address": "local", "ray.progress": False, "select.min_face_score": 0.85})
    out = tmp_path / "out"
    rc = main(["build", "--config", str(tmp_path / "hm.toml"), "--sources", "folder,celebv-hq,vfhq",
               "--out", str(out), *[a for k, v in sets.items() for a in ("--set", f"{k}={v}")]])
    assert rc == 0
    samples, rejects = read_samples(out), read_rejects(out)
    for clip, reason in expect.items():
        if reason is None:
            assert clip in samples, (clip, rejects.get(clip))
        else:
            assert rejects.get(clip) == reason, (clip, rejects.get(clip), clip in samples)
    assert len(samples) + len(rejects) == len(expect)
    # As a player shows them: portrait, 160 wide and 224 high, as the scene was filmed.
    assert samples["phone.mp4"]["crop"]["source_size"] == [160, 224]
    assert samples["photo_exif.jpg"]["crop"]["source_size"] == [160, 224]
    assert "looking happy" in samples["ytGOODGOOD1_0"]["description"]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind, message", [
    ("deep", "nests JSON arrays or objects too deeply to parse; download the file again"),
    ("latin1", "is not UTF-8 text (byte 0xe9 at offset 25); save it as UTF-8"),
    ("fifo", "is a FIFO (named pipe), not a regular file; point the source's options.info at the metadata file"),
    ("dangling", "is a link to"),
    ("not_json", "is not valid JSON (Expecting value at line 1 column 1)"),
])
def test_unusable_metadata_file_is_one_line_and_exit_2(tmp_path, capsys, kind, message):
    info = tmp_path / "celebvhq_info.json"
    if kind == "deep":
        info.write_text('{"clips": ' + "[" * 100_000 + "]" * 100_000 + "}")
    elif kind == "latin1":
        info.write_bytes('{"clips": {"ytAAAAAAAAA_0é": {}}}'.encode("latin-1"))
    elif kind == "fifo":
        os.mkfifo(info)
    elif kind == "dangling":
        info.symlink_to(tmp_path / "moved_away.json")
    else:
        info.write_text("<html>rate limited</html>")
    rc = main(["build", "--sources", f"celebv-hq={tmp_path}", "--out",
               str(tmp_path / "out"), "--set", "ray.address=local"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err
    assert message in err and str(info) in err, err


def test_rows_nested_past_the_limit_are_rejected_alone(tmp_path):
    """Under the JSON parser's own recursion limit: the file parses, and only the deep row is rejected."""
    (tmp_path / "clips").mkdir()
    (tmp_path / "clips" / "ytGOODGOOD1_0.mp4").write_bytes(b"x")
    deep = celebv_row("ytDEEPDEEP1", attributes=nested_labels(300))  # 2 levels per segment: ~600 deep
    rows = {"ytGOODGOOD1_0": celebv_row("ytGOODGOOD1"), "ytDEEPDEEP1_0": deep}
    (tmp_path / "celebvhq_info.json").write_text(json.dumps({"clips": rows}))
    specs = {s.clip_id: s for s in CelebVHQSource("celebv-hq", SourceConfig(root=str(tmp_path)), tmp_path).specs()}
    assert specs["ytGOODGOOD1_0"].reject_reason is None
    assert specs["ytDEEPDEEP1_0"].reject_reason == "bad_row"
    assert "nests more than 12 levels deep" in specs["ytDEEPDEEP1_0"].reject_detail
