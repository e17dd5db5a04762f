"""Nothing outside a source's root is opened: in the folder source and in every corpus adapter, a link that leads
out of the root is a rejection (``outside_root``) unless ``allow_links_outside_root`` is set; dangling links, FIFOs
and folders named like media are rejections too. Several links lead to FIFOs outside the root: opening one for
reading would block, so the time limit catches any adapter that opens what it should only look at."""

from __future__ import annotations

import json
import os
import pathlib

import pytest

from corpora import write_face_image
from human_motion.sources.aahq import AAHQSource
from human_motion.sources.celebv_hq import CelebVHQSource
from human_motion.sources.celebv_text import CelebVTextSource
from human_motion.sources.config import SourceConfig
from human_motion.sources.folder import FolderSource
from human_motion.sources.vfhq import VFHQSource

pytestmark = pytest.mark.timeout(60)


def outside(tmp_path: pathlib.Path) -> pathlib.Path:
    """Another disk: a video, a FIFO, a folder of videos and an image, none of which may be opened by default."""
    out = tmp_path / "elsewhere"
    (out / "videos").mkdir(parents=True, exist_ok=True)
    (out / "secret.mp4").write_bytes(b"not to be read")
    (out / "videos" / "more.mp4").write_bytes(b"not to be read")
    (out / "videos" / "ytRAWRAWRAW.mp4").write_bytes(b"not to be read")
    if not (out / "fifo").exists():
        os.mkfifo(out / "fifo")
    write_face_image(out / "portrait.png")
    return out


def reasons(adapter) -> dict[str, str | None]:
    return {s.clip_id: s.reject_reason for s in adapter.specs()}


def test_folder_source(tmp_path):
    out = outside(tmp_path)
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "good.mp4").write_bytes(b"x")
    (root / "inner_link.mp4").symlink_to(root / "good.mp4")  # inside the root: read
    (root / "out_file.mp4").symlink_to(out / "secret.mp4")
    (root / "out_fifo.mp4").symlink_to(out / "fifo")
    (root / "passwd.mp4").symlink_to("/etc/passwd")
    (root / "dangling.mp4").symlink_to(root / "gone.mp4")
    os.mkfifo(root / "pipe.mp4")
    (root / "named.mp4").mkdir()
    (root / "named.mp4" / "inside.mp4").write_bytes(b"x")
    (root / "out_dir").symlink_to(out / "videos", target_is_directory=True)
    (root / "sub" / "loop").symlink_to(root, target_is_directory=True)  # a loop: walked once
    got = reasons(FolderSource("folder", SourceConfig(root=str(root)), tmp_path))
    assert got == {"good.mp4": None, "inner_link.mp4": None, "named.mp4/inside.mp4": None,
                   "out_file.mp4": "outside_root", "out_fifo.mp4": "outside_root", "passwd.mp4": "outside_root",
                   "out_dir": "outside_root", "dangling.mp4": "missing_file", "pipe.mp4": "not_a_file",
                   "named.mp4": "not_a_file"}
    specs = {s.clip_id: s for s in FolderSource("folder", SourceConfig(root=str(root)), tmp_path).specs()}
    assert "outside the source root" in specs["passwd.mp4"].reject_detail
    assert "allow_links_outside_root" in specs["passwd.mp4"].reject_detail and specs["passwd.mp4"].path == ""
    assert "directory named like a video" in specs["named.mp4"].reject_detail
    assert "FIFO" in specs["pipe.mp4"].reject_detail
    allowed = reasons(FolderSource("folder", SourceConfig(root=str(root), allow_links_outside_root=True), tmp_path))
    assert allowed["out_file.mp4"] is None and allowed["passwd.mp4"] is None
    assert allowed["out_dir/more.mp4"] is None and allowed["out_dir/ytRAWRAWRAW.mp4"] is None
    assert allowed["out_fifo.mp4"] == "not_a_file"  # allowed out, still never opened


def test_aahq(tmp_path):
    out = outside(tmp_path)
    aligned = tmp_path / "aahq" / "aligned"
    write_face_image(aligned / "00001.png")
    (aligned / "00002.png").symlink_to(out / "portrait.png")
    (aligned / "00003.png").symlink_to(out / "fifo")
    (aligned / "LICENSE.txt").symlink_to(out / "fifo")  # a skipped kind of file: no row, and not opened
    root = str(tmp_path / "aahq")
    assert reasons(AAHQSource("aahq", SourceConfig(root=root), tmp_path)) == {
        "00001.png": None, "00002.png": "outside_root", "00003.png": "outside_root"}
    allowed = reasons(AAHQSource("aahq", SourceConfig(root=root, allow_links_outside_root=True), tmp_path))
    assert allowed == {"00001.png": None, "00002.png": None, "00003.png": "not_a_file"}


def celebv_row(ytb_id: str) -> dict:
    return {"ytb_id": ytb_id, "duration": {"start_sec": 0.0, "end_sec": 2.0},
            "bbox": {"top": 0.1, "bottom": 0.9, "left": 0.1, "right": 0.9}}


@pytest.mark.parametrize("adapter, info", [(CelebVHQSource, "celebvhq_info.json"),
                                           (CelebVTextSource, "celebvtext_info.json")])
def test_celebv_adapters(tmp_path, adapter, info):
    out = outside(tmp_path)
    root = tmp_path / "corpus"
    clips = root / "processed"
    clips.mkdir(parents=True)
    (clips / "ytGOODGOOD1_0.mp4").write_bytes(b"x")
    (clips / "ytOUTOUTOUT_0.mp4").symlink_to(out / "secret.mp4")
    (clips / "ytFIFOFIFO1_0.mp4").symlink_to(out / "fifo")
    os.mkfifo(clips / "ytPIPEPIPE1_0.mp4")
    (clips / "ytDIRDIRDIR_0.mp4").mkdir()
    (root / "raw").symlink_to(out / "videos", target_is_directory=True)  # raw videos on another disk
    ids = ["ytGOODGOOD1_0", "ytOUTOUTOUT_0", "ytFIFOFIFO1_0", "ytPIPEPIPE1_0", "ytDIRDIRDIR_0"]
    rows = {i: celebv_row(i[:-2]) for i in ids}
    rows["ytRAWRAWRAW_1"] = celebv_row("ytRAWRAWRAW")
    if adapter is CelebVTextSource:  # boxes in pixels
        rows["ytRAWRAWRAW_1"]["bbox"] = {"top": 0, "bottom": 10, "left": 0, "right": 10}
    (root / info).write_text(json.dumps({"clips": rows}))
    # CelebV-Text's texts: one is a link to a FIFO outside the root.
    (root / "texts" / "emotion").mkdir(parents=True)
    (root / "texts" / "emotion" / "ytGOODGOOD1_0.txt").symlink_to(out / "fifo")
    got = reasons(adapter("c", SourceConfig(root=str(root)), tmp_path))
    assert {k: got[k] for k in ids[1:]} == {"ytOUTOUTOUT_0": "outside_root", "ytFIFOFIFO1_0": "outside_root",
                                            "ytPIPEPIPE1_0": "not_a_file", "ytDIRDIRDIR_0": "not_a_file"}
    assert got["ytGOODGOOD1_0"] == (None if adapter is CelebVHQSource else "outside_root")  # its text, for -Text
    specs = {s.clip_id: s for s in adapter("c", SourceConfig(root=str(root)), tmp_path).specs()}
    raw = specs["ytRAWRAWRAW_1"]
    assert raw.reject_reason == "missing_file" and "links to folders outside the root were not followed: raw" \
        in raw.reject_detail
    allowed = reasons(adapter("c", SourceConfig(root=str(root), allow_links_outside_root=True), tmp_path))
    assert allowed["ytOUTOUTOUT_0"] is None and allowed["ytRAWRAWRAW_1"] is None
    assert allowed["ytFIFOFIFO1_0"] == "not_a_file" and allowed["ytPIPEPIPE1_0"] == "not_a_file"


def test_celebv_metadata_file_linked_out_of_the_root_is_refused(tmp_path):
    from human_motion.config import ConfigError

    out = outside(tmp_path)
    (out / "celebvhq_info.json").write_text(json.dumps({"clips": {}}))
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "celebvhq_info.json").symlink_to(out / "celebvhq_info.json")
    with pytest.raises(ConfigError, match="outside the source root .*allow_links_outside_root.*options.info"):
        list(CelebVHQSource("celebv-hq", SourceConfig(root=str(tmp_path / "root")), tmp_path).specs())
    allowed = SourceConfig(root=str(tmp_path / "root"), allow_links_outside_root=True)
    assert list(CelebVHQSource("celebv-hq", allowed, tmp_path).specs()) == []


def vfhq_meta(ytid: str) -> str:
    return (f"Video ID: {ytid}\nH: 160\nW: 160\nFPS: 4.0\n000001 40 40 120 120\n000002 40 40 120 120\n"
            "CROP_BBOX: 0 0 160 160\n")


def test_vfhq(tmp_path):
    out = outside(tmp_path)
    root = tmp_path / "vfhq"
    meta, media = root / "meta_info", root / "media"
    meta.mkdir(parents=True)
    media.mkdir()
    names = {k: f"Clip+yt{k.upper():_<9}+P0+C0+F0-8" for k in ("good", "frames", "badframe", "outdir", "outclip",
                                                                "outmeta", "fifometa", "dangling")}
    for key in ("good", "frames", "badframe", "outdir", "outclip"):
        (meta / f"{names[key]}.txt").write_text(vfhq_meta(names[key].split("+")[1]))
    (out / "meta.txt").write_text(vfhq_meta(names["outmeta"].split("+")[1]))
    (meta / f"{names['outmeta']}.txt").symlink_to(out / "meta.txt")
    os.mkfifo(meta / f"{names['fifometa']}.txt")
    (meta / f"{names['dangling']}.txt").symlink_to(meta / "gone.txt")
    (media / f"{names['good']}.mp4").write_bytes(b"x")
    write_face_image(media / names["frames"] / "00000000.png")
    write_face_image(media / names["badframe"] / "00000000.png")
    (media / names["badframe"] / "00000001.png").symlink_to(out / "portrait.png")
    (media / names["outdir"]).symlink_to(out / "videos", target_is_directory=True)
    (media / f"{names['outclip']}.mp4").symlink_to(out / "fifo")
    cfg = SourceConfig(root=str(root), options={"media_dir": "media"})
    found = reasons(VFHQSource("vfhq", cfg, tmp_path / "work"))
    got = {k: found[n] for k, n in names.items()}
    assert got == {"good": None, "frames": None, "badframe": "outside_root", "outdir": "outside_root",
                   "outclip": "outside_root", "outmeta": "outside_root", "fifometa": "not_a_file",
                   "dangling": "missing_file"}
