"""media: what is read is what a player shows (display matrix, rotate tag, EXIF), sizes are checked from headers
before any pixel is decoded (bombs measured in a child process), and files that are not what their name says are
refused with a reason that says what they are."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import textwrap
import zlib
from fractions import Fraction

import numpy as np
import pytest

from human_motion import media
from human_motion.media import MediaError, Orientation

av = pytest.importorskip("av")


def marked_frame(h: int = 32, w: int = 64) -> np.ndarray:
    """A frame a turn cannot map onto itself: a white top-left block and a red top-right one."""
    frame = np.zeros((h, w, 3), np.uint8)
    frame[:8, :8] = 255
    frame[:8, -8:, 0] = 255
    return frame


def write_video(path, frame: np.ndarray, n: int = 8, ccw_deg: float | None = None, hflip: bool = False,
                tags: dict | None = None, fmt: str | None = None) -> None:
    """A clip of ``frame`` stored as is, with a display matrix (PyAV's counter-clockwise degrees, then a mirror)
    and/or stream tags, as phones and editing tools write them."""
    h, w = frame.shape[:2]
    with av.open(str(path), "w", format=fmt) as out:
        stream = out.add_stream("libx264", rate=Fraction(4))
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        if ccw_deg is not None:
            stream.set_display_rotation(ccw_deg, hflip=hflip)
        stream.metadata.update(tags or {})
        for _ in range(n):
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def read_first(path) -> tuple[media.VideoInfo, np.ndarray]:
    with media.open_video(str(path)) as container:
        info = media.probe_video(container)
        frames = [f for _, f in media.iter_sampled_frames(container, 0.0, [0.0, 0.5])]
    assert len(frames) == 2
    return info, frames[0]


@pytest.mark.parametrize("ext", ["mp4", "mov", "mkv"])
@pytest.mark.parametrize("ccw, hflip, clockwise", [(90, False, 270), (-90, False, 90), (180, False, 180),
                                                   (0, True, 0), (90, True, 270)])
def test_display_matrix_is_applied_as_a_player_does(tmp_path, ext, ccw, hflip, clockwise):
    stored = marked_frame()
    path = tmp_path / f"phone.{ext}"
    write_video(path, stored, ccw_deg=ccw, hflip=hflip)
    info, frame = read_first(path)
    # What a player shows: the stored pixels turned counter-clockwise by the matrix's angle, then mirrored.
    shown = np.rot90(stored, k=ccw // 90)
    shown = shown[:, ::-1] if hflip else shown
    assert frame.shape == shown.shape
    assert np.abs(frame.astype(int) - shown).mean() < 6
    assert info.orientation == Orientation(clockwise, hflip)
    assert info.display_size == (shown.shape[1], shown.shape[0]) and (info.width, info.height) == (64, 32)


def test_phone_portrait_clip_comes_out_upright(tmp_path):
    """A phone holds the sensor sideways: a portrait scene is stored as a landscape frame turned a quarter
    counter-clockwise, with a matrix that turns it back clockwise (ffprobe: "rotation of -90.00 degrees")."""
    upright = marked_frame(64, 32)  # the portrait scene
    write_video(tmp_path / "IMG_0001.MOV", np.ascontiguousarray(np.rot90(upright, k=1)), ccw_deg=-90, fmt="mov")
    info, frame = read_first(tmp_path / "IMG_0001.MOV")
    assert info.rotation_deg == 90 and frame.shape == upright.shape
    assert np.abs(frame.astype(int) - upright).mean() < 6


def test_rotate_tag_is_applied_when_there_is_no_matrix(tmp_path):
    stored = marked_frame()
    write_video(tmp_path / "tagged.mkv", stored, tags={"rotate": "90"})  # clockwise, old FFmpeg's convention
    info, frame = read_first(tmp_path / "tagged.mkv")
    assert info.orientation == Orientation(90)
    assert np.abs(frame.astype(int) - np.rot90(stored, k=-1)).mean() < 6


def test_upright_clip_is_untouched(tmp_path):
    stored = marked_frame()
    write_video(tmp_path / "plain.mp4", stored)
    info, frame = read_first(tmp_path / "plain.mp4")
    assert info.orientation == Orientation() and frame.shape == stored.shape


@pytest.mark.parametrize("fmt, ext", [("JPEG", "jpg"), ("PNG", "png"), ("WEBP", "webp"), ("TIFF", "tif")])
def test_exif_orientation_is_applied_like_a_viewer(tmp_path, fmt, ext):
    from PIL import Image, ImageOps

    stored = marked_frame(40, 60)
    for tag in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = tag
        path = tmp_path / f"o{tag}.{ext}"
        Image.fromarray(stored).save(path, format=fmt, exif=exif, **({} if fmt == "PNG" else {"quality": 100}))
        image, orientation = media.read_image_oriented(str(path))
        with Image.open(path) as im:
            shown = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))  # Pillow's reading of the tag
        assert image.shape == shown.shape, (fmt, tag)
        assert np.abs(image.astype(int) - shown).mean() < 8, (fmt, tag)
        assert orientation == Orientation.from_exif(tag)
    assert Orientation.from_exif(6) == Orientation(90) and Orientation.from_exif(8) == Orientation(270)


def bomb_png(width: int, height: int) -> bytes:
    """A grayscale PNG of zeros, compressed row by row (never held whole in memory): 20000x20000 is 0.4 MB."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\0" * (1 + width)
    z = zlib.compressobj(9)
    idat = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def peak_memory_of(call: str, path) -> dict:
    """Run ``media.<call>`` on ``path`` in a child process; its MediaError reason and how far its peak resident
    memory rose above what it had after the imports (MB)."""
    code = textwrap.dedent(f"""
        import json, resource, sys
        from human_motion import media
        import av, cv2, PIL.Image  # loaded before the baseline, so only decoding counts
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        try:
            {call}
            reason, detail = None, ""
        except media.MediaError as e:
            reason, detail = e.reason, e.detail
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(json.dumps({{"reason": reason, "detail": detail, "rise_mb": (peak - base) / 1024}}))
    """)
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_png_bomb_is_refused_from_its_header(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(bomb_png(20000, 20000))
    assert path.stat().st_size < 1_000_000
    result = peak_memory_of("media.read_image(sys.argv[1])", path)
    # Decoded, it would take 1.2 GB as RGB (2.4 GB peak was measured before the header check).
    assert result["reason"] == "image_too_large" and result["rise_mb"] < 100, result
    assert result["detail"] == ("bomb.png: 400 megapixels by its header, more than any image is decoded at; "
                                "refused before decoding")


def test_image_too_large_by_side_from_its_header(tmp_path):
    path = tmp_path / "wide.png"
    path.write_bytes(bomb_png(5000, 10))
    with pytest.raises(MediaError, match="5000x10 > 4096") as e:
        media.read_image(str(path))
    assert e.value.reason == "image_too_large"


def test_video_bomb_is_refused_before_its_frame_is_decoded(tmp_path):
    """A MOV holding a 16000x16000 PNG frame (0.25 MB): FFmpeg decodes a frame to probe such a stream, 256 MB;
    the max_pixels cap keeps that from happening."""
    frame = bomb_png(16000, 16000)
    path = tmp_path / "bomb.mov"
    with av.open(str(path), "w", format="mov") as out:
        stream = out.add_stream("png", rate=Fraction(4))
        stream.width, stream.height, stream.pix_fmt = 16000, 16000, "gray"
        for i in range(2):
            packet = av.Packet(frame)
            packet.stream, packet.pts, packet.dts, packet.time_base = stream, i, i, Fraction(1, 4)
            out.mux(packet)
    result = peak_memory_of("media.probe_video(media.open_video(sys.argv[1]))", path)
    assert result["reason"] == "video_too_large" and result["rise_mb"] < 100, result


def test_video_over_the_side_limit_is_refused_from_its_header(tmp_path):
    write_video(tmp_path / "strip.mp4", np.zeros((16, 9000, 3), np.uint8), n=2)
    with pytest.raises(MediaError, match="9000x16") as e, media.open_video(str(tmp_path / "strip.mp4")) as container:
        media.probe_video(container)
    assert e.value.reason == "video_too_large"


def test_files_that_are_not_what_their_name_says(tmp_path):
    png = tmp_path / "photo.mp4"
    png.write_bytes(bomb_png(64, 64))
    with pytest.raises(MediaError, match="photo.mp4 is a PNG image, not a video") as e:
        media.open_video(str(png))
    assert e.value.reason == "not_a_video"
    clip = tmp_path / "clip.jpg"
    write_video(clip, marked_frame(), n=2, fmt="mp4")
    with pytest.raises(MediaError, match="clip.jpg is an MP4/MOV video, not an image") as e:
        media.read_image(str(clip))
    assert e.value.reason == "not_an_image"
    folder = tmp_path / "x.mp4"
    folder.mkdir()
    with pytest.raises(MediaError, match="x.mp4 is a directory") as e:
        media.open_video(str(folder))
    assert e.value.reason == "not_a_file"


@pytest.mark.timeout(20)
def test_a_fifo_is_never_opened(tmp_path):
    for name in ("pipe.mp4", "pipe.png"):
        os.mkfifo(tmp_path / name)  # opening it for reading would block until a writer comes: forever
    with pytest.raises(MediaError, match="FIFO") as e:
        media.open_video(str(tmp_path / "pipe.mp4"))
    assert e.value.reason == "not_a_file"
    with pytest.raises(MediaError, match="FIFO"):
        media.read_image(str(tmp_path / "pipe.png"))


def test_media_imports_without_pyav_or_opencv():
    code = ("import sys; sys.modules['av'] = None; sys.modules['cv2'] = None\n"
            "import human_motion.media as m; print(m.Orientation.from_exif(6))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and "rotation_deg=90" in out.stdout, out.stderr[-2000:]
