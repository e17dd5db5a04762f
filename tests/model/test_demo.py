"""``hm demo``: the Gradio page built on a tiny checkpoint saved by `hm train`; its callback; and the page opened in
headless Chromium (Debian's chromium driven by playwright): it loads, takes a reference photo, returns a video."""

from __future__ import annotations

import os
import pathlib

import av
import cv2
import pytest

from .tiny_run import astronaut, coffee, tiny_run

gr = pytest.importorskip("gradio", reason="the demo extra (gradio) is not installed: pip install -e '.[demo]'")

CHROMIUM = pathlib.Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    import torch

    from human_motion.model.sampling import MotionCharacterPipeline

    torch.set_num_threads(1)
    p = MotionCharacterPipeline.from_pretrained(tiny_run(tmp_path_factory))
    p.set_progress_bar_config(disable=True)
    return p


def test_callback_returns_an_mp4_and_face_errors_as_messages(pipe, tmp_path):
    from human_motion.model.demo import make_generate_fn

    generate = make_generate_fn(pipe, tmp_path)
    path = generate(astronaut(), "a man", "smiling", 5.0, 0, 2, 8.0)
    with av.open(path) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == 4 and frames[0].shape == (32, 32, 3)
    with pytest.raises(gr.Error, match="no face found"):
        generate(coffee(), "a man", "smiling", 5.0, 0, 2, 8.0)
    with pytest.raises(gr.Error, match="Upload a reference"):
        generate(None, "a man", "smiling", 5.0, 0, 2, 8.0)


def test_page_has_the_inputs(pipe, tmp_path):
    from human_motion.model.demo import build_demo

    demo = build_demo(pipe, tmp_path)
    config = demo.get_config_file()
    kinds = {c.get("props", {}).get("elem_id"): c["type"] for c in config["components"]}
    assert kinds["reference"] == "image" and kinds["video"] == "video" and kinds["intensity"] == "slider"
    assert {"prompt", "action", "seed", "generate"} <= set(kinds)


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium "
                    "(apt-get install chromium; scripts/setup.sh installs it as root)")
def test_page_in_headless_chromium_returns_a_video(pipe, tmp_path):
    pytest.importorskip("playwright", reason="needs the playwright package (pip install playwright)")
    from playwright.sync_api import sync_playwright

    from human_motion.model.demo import build_demo, launch

    photo = tmp_path / "reference.jpg"
    cv2.imwrite(str(photo), cv2.cvtColor(astronaut(), cv2.COLOR_RGB2BGR))
    demo = build_demo(pipe, tmp_path / "videos", steps=2)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    _, url, _ = launch(demo, "127.0.0.1", 0, block=False)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page()
                page.set_default_timeout(60_000)
                page.goto(url)
                page.wait_for_selector("#generate")  # the page loaded and rendered
                page.locator("#reference input[type=file]").set_input_files(str(photo))
                page.wait_for_selector("#reference img")  # the upload shows as a preview
                page.fill("#action textarea", "smiling")
                page.click("#generate")
                video = page.wait_for_selector("#video video[src]")
                src = video.get_attribute("src")
                served = page.request.get(src if "://" in src else url.rstrip("/") + src)
                body = served.body()
                # the browser decodes it: metadata (duration, size) loaded from the served MP4
                page.wait_for_function("() => { const v = document.querySelector('#video video');"
                                       " return v && v.readyState >= 1 && v.videoWidth > 0; }")
                size = page.evaluate("() => { const v = document.querySelector('#video video');"
                                     " return [v.videoWidth, v.videoHeight]; }")
            finally:
                browser.close()
    finally:
        demo.close()
    assert served.ok and body[4:8] == b"ftyp" and size == [32, 32]
    written = sorted((tmp_path / "videos").glob("*.mp4"))
    assert len(written) == 1 and written[0].name.endswith("_i5_s0.mp4")
    with av.open(str(written[0])) as container:
        assert sum(1 for _ in container.decode(video=0)) == 4


def test_an_unreadable_upload_is_a_message_without_the_server_path(pipe, tmp_path):
    """gradio's own error for a file it cannot open names where it saved the upload; the page's does not."""
    from gradio.data_classes import ImageData

    from human_motion.model.demo import UNREADABLE_UPLOAD, build_demo

    bad = tmp_path / "gradio" / "0123abcd" / "face.jpg"  # where gradio keeps an upload on the server
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    payload = ImageData(path=str(bad), orig_name="face.jpg")
    with pytest.raises(Exception) as plain:
        gr.Image(type="numpy").preprocess(payload)
    assert str(bad) in str(plain.value)  # what the page showed before
    demo = build_demo(pipe, tmp_path / "videos")
    reference = next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "reference")
    assert reference.get_block_name() == "image"  # drawn as gradio's Image on the page
    with pytest.raises(gr.Error) as e:
        reference.preprocess(payload)
    assert e.value.message == UNREADABLE_UPLOAD and str(tmp_path) not in e.value.message


def test_a_failure_on_the_server_shows_no_path(pipe, tmp_path, monkeypatch, caplog):
    import human_motion.media
    from human_motion.model.demo import FAILED, launch, make_generate_fn

    def full_disk(path, frames, fps):
        raise OSError(28, "No space left on device", path)

    monkeypatch.setattr(human_motion.media, "write_mp4", full_disk)
    generate = make_generate_fn(pipe, tmp_path)
    with pytest.raises(gr.Error) as e:
        generate(astronaut(), "a man", "smiling", 5.0, 0, 1, 8.0)
    assert e.value.message == FAILED and str(tmp_path) not in e.value.message
    assert str(tmp_path) in caplog.text  # the details stay in the server's log
    with pytest.raises(gr.Error, match="intensity must be a finite number >= 0"):
        generate(astronaut(), "a man", "smiling", -1.0, 0, 1, 8.0)

    seen = {}

    class Page:
        def launch(self, **kwargs):
            seen.update(kwargs)

    launch(Page(), "127.0.0.1", 0, block=False)
    assert seen["show_error"] is False  # other exceptions' texts never reach the page


def test_a_missing_or_damaged_checkpoint_stops_the_demo_in_one_line(tmp_path, capsys):
    from human_motion.cli import main

    assert main(["demo", "--checkpoint", str(tmp_path / "nope"), "--device", "cpu"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and "does not exist" in err[0] and str(tmp_path / "nope") in err[0]
