"""``hm generate`` end to end on CPU with a tiny checkpoint saved by `hm train`: playable MP4s of the asked size and
length, repeatable seeds, intensity sweeps with a grid, clear errors for unusable reference photos."""

from __future__ import annotations

import json

import av
import cv2
import numpy as np
import pytest

from human_motion.cli import main
from human_motion.config import ConfigError
from human_motion.model.generate import make_grid, output_paths, parse_intensities

from .tiny_run import astronaut, coffee, group_photo, tiny_run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return tiny_run(tmp_path_factory)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    for name, rgb in {"astronaut.jpg": astronaut(), "coffee.jpg": coffee(), "group.jpg": group_photo()}.items():
        cv2.imwrite(str(folder / name), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return folder


def decode(path) -> tuple[np.ndarray, str]:
    """Frames (f, h, w, 3) and codec name, read back with PyAV (what a player does)."""
    with av.open(str(path)) as container:
        codec = container.streams.video[0].codec_context.name
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    return frames, codec


def generate(run_dir, ref, out, *extra, capsys=None):
    args = ["generate", "--checkpoint", str(run_dir), "--ref", str(ref), "--prompt", "a man in a space suit",
            "--action", "smiling", "--steps", "2", "--device", "cpu", *extra, "--out", str(out)]
    return main(args)


def test_writes_a_playable_mp4_of_the_asked_size_and_length(run_dir, photos, tmp_path, capsys):
    out = tmp_path / "one.mp4"
    assert generate(run_dir, photos / "astronaut.jpg", out, "--intensity", "7", "--num-frames", "6",
                    "--height", "40", "--width", "48", "--gif") == 0
    frames, codec = decode(out)
    assert codec == "h264" and frames.shape == (6, 40, 48, 3)
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["videos"][0]["video"] == str(out) and summary["device"] == "cpu" and "grid" not in summary
    from PIL import Image

    with Image.open(out.with_suffix(".gif")) as gif:
        assert gif.n_frames == 6 and gif.size == (48, 40)


def test_same_seed_same_video_other_seed_another(run_dir, photos, tmp_path):
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        assert generate(run_dir, photos / "astronaut.jpg", tmp_path / f"{name}.mp4", "--seed", str(seed)) == 0
    a, b, c = (decode(tmp_path / f"{n}.mp4")[0] for n in "abc")
    assert a.shape == (4, 32, 32, 3)  # the run's training size by default
    np.testing.assert_array_equal(a, b)
    assert (tmp_path / "a.mp4").read_bytes() == (tmp_path / "b.mp4").read_bytes()  # the file itself, byte for byte
    assert not np.array_equal(a, c)


def test_mp4_bytes_repeat_for_the_same_frames(run_dir):
    """x264's macroblock tree made identical frames encode differently now and then in a busy process."""
    import torch

    from human_motion.media import encode_mp4
    from human_motion.model.generate import load_pipeline
    from human_motion.model.sampling import frames_to_uint8

    pipe = load_pipeline(str(run_dir), "cpu")
    pipe.set_progress_bar_config(disable=True)
    reference = pipe.prepare_reference(astronaut())
    encoded = set()
    for _ in range(3):
        frames = pipe(reference_face=reference, prompt="a man", action="smiling", intensity=1.0, height=64, width=64,
                      num_inference_steps=2, generator=torch.Generator().manual_seed(0), output_type="np").frames
        encoded |= {encode_mp4(frames_to_uint8(frames[0]), 4.0) for _ in range(5)}
    assert len(encoded) == 1


def test_intensity_sweep_writes_one_video_per_value_and_a_grid(run_dir, photos, tmp_path, capsys):
    out = tmp_path / "sweep"
    assert generate(run_dir, photos / "astronaut.jpg", out, "--intensity", "0,20", "--seed", "1",
                    "--save-reference") == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    low, high = decode(out / "intensity_0.mp4")[0], decode(out / "intensity_20.mp4")[0]
    assert low.shape == high.shape == (4, 32, 32, 3)
    assert not np.array_equal(low, high)  # same seed, same noise: only the intensity differs
    grid, codec = decode(out / "grid.mp4")
    assert codec == "h264" and grid.shape == (4, 32, 64, 3) and summary["grid"] == str(out / "grid.mp4")
    assert [v["intensity"] for v in summary["videos"]] == [0.0, 20.0]
    assert (out / "intensity_0_reference.png").is_file()


@pytest.mark.parametrize("photo, message", [("coffee.jpg", "no face found"), ("group.jpg", "several faces")])
def test_unusable_reference_is_a_clear_error(run_dir, photos, tmp_path, capsys, photo, message):
    out = tmp_path / "x.mp4"
    assert generate(run_dir, photos / photo, out) == 2
    err = capsys.readouterr().err
    assert message in err and photo in err
    assert not out.exists()


@pytest.mark.parametrize("extra, message", [
    (["--num-frames", "0"], "--num-frames must be >= 1"),  # 0 is not "the run's own"
    (["--height", "30"], "--height must be a multiple of 8"),
    (["--steps", "0"], "--steps must be >= 1"),
    (["--fps", "0"], "--fps must be a number > 0"),
    (["--guidance", "nan"], "--guidance must be a finite number"),
    (["--num-frames", "1000"], "num_frames must be within 1..32"),  # what only the loaded model knows
])
def test_numbers_that_cannot_make_a_video_are_one_line_refusals(run_dir, photos, tmp_path, capsys, extra, message):
    out = tmp_path / "x.mp4"
    assert generate(run_dir, photos / "astronaut.jpg", out, *extra) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert not out.exists()


def test_no_face_check_takes_the_image_as_an_aligned_crop(run_dir, photos, tmp_path):
    assert generate(run_dir, photos / "coffee.jpg", tmp_path / "x.mp4", "--no-face-check") == 0
    assert decode(tmp_path / "x.mp4")[0].shape == (4, 32, 32, 3)


def test_argument_helpers(tmp_path):
    assert parse_intensities("0, 5,10,20") == [0.0, 5.0, 10.0, 20.0]
    for bad in ("", "a", "-1", "nan"):
        with pytest.raises(ConfigError):
            parse_intensities(bad)
    videos, grid = output_paths(str(tmp_path / "v.mp4"), [0.0, 2.5])
    assert [p.name for p in videos] == ["v_i0.mp4", "v_i2.5.mp4"] and grid.name == "v_grid.mp4"
    with pytest.raises(ConfigError, match="mp4 file or a folder"):
        output_paths(str(tmp_path / "v.avi"), [1.0])
    grid = make_grid([np.zeros((2, 16, 24, 3), np.uint8)] * 5, [str(i) for i in range(5)])
    assert grid.shape == (2, 32, 96, 3)  # rows of 4


def test_missing_or_unreadable_reference_is_a_one_line_error(run_dir, tmp_path, capsys):
    assert generate(run_dir, tmp_path / "nope.jpg", tmp_path / "x.mp4") == 2
    assert "no such file" in capsys.readouterr().err
    (tmp_path / "text.jpg").write_text("not an image")
    assert generate(run_dir, tmp_path / "text.jpg", tmp_path / "x.mp4") == 2
    assert "cannot read the image" in capsys.readouterr().err


def test_large_photos_are_downscaled_before_the_face_search(tmp_path):
    from human_motion.model.sampling import read_reference

    big = cv2.resize(astronaut(), (5000, 5000), interpolation=cv2.INTER_LINEAR)  # over media.read_image's 4096
    cv2.imwrite(str(tmp_path / "big.jpg"), cv2.cvtColor(big, cv2.COLOR_RGB2BGR))
    assert read_reference(tmp_path / "big.jpg").shape == (2048, 2048, 3)


def test_intensity_scale_zero_switches_the_intensity_branch_off(run_dir, photos, tmp_path):
    out = tmp_path / "off"
    assert generate(run_dir, photos / "astronaut.jpg", out, "--intensity", "0,20", "--intensity-scale", "0",
                    "--no-grid") == 0
    np.testing.assert_array_equal(decode(out / "intensity_0.mp4")[0], decode(out / "intensity_20.mp4")[0])
    assert not (out / "grid.mp4").exists()


def test_hm_eval_protocol_runs_on_the_real_pipeline(run_dir, photos, tmp_path):
    """`hm eval --protocol` (human_motion/eval/protocol.py) drives MotionCharacterPipeline through its interface."""
    refs = tmp_path / "refs"
    refs.mkdir()
    (refs / "a.jpg").write_bytes((photos / "astronaut.jpg").read_bytes())
    (tmp_path / "prompts.txt").write_text("an astronaut\n")
    out = tmp_path / "eval"
    argv = ["eval", "--protocol", "--checkpoint", str(run_dir), "--refs", str(refs), "--prompts",
            str(tmp_path / "prompts.txt"), "--actions", "smiling", "--intensities", "0,20", "--seeds", "0",
            "--out", str(out), "--set", "metrics=[intensity_fidelity]", "--set", "protocol.num_frames=4",
            "--set", "protocol.height=64", "--set", "protocol.width=64", "--set", "protocol.num_inference_steps=2",
            "--set", "protocol.device=cpu"]
    assert main(argv) == 0
    videos = sorted((out / "videos").glob("*.mp4"))
    assert len(videos) == 2 and all(decode(v)[0].shape == (4, 64, 64, 3) for v in videos)
    assert json.loads((out / "results.json").read_text())["intensity_fidelity"]["n"] == 2


def test_cuda_falls_back_to_the_cpu_in_fp32(monkeypatch, capsys):
    import torch

    from human_motion.model.generate import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("cuda", "auto") == ("cpu", torch.float32)
    assert "running on the CPU" in capsys.readouterr().err
    assert resolve_device("auto", "fp16") == ("cpu", torch.float32)
    assert resolve_device("cpu", "bf16") == ("cpu", torch.bfloat16)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto", "auto") == ("cuda", torch.float16)


def test_a_save_pretrained_folder_is_a_checkpoint_too(run_dir, photos, tmp_path):
    """`--checkpoint` takes a folder of save_pretrained: the same video as from the run folder, byte for byte."""
    from human_motion.model.sampling import MotionCharacterPipeline

    MotionCharacterPipeline.from_pretrained(run_dir).save_pretrained(tmp_path / "saved")
    assert generate(run_dir, photos / "astronaut.jpg", tmp_path / "run.mp4", "--seed", "5") == 0
    assert generate(tmp_path / "saved", photos / "astronaut.jpg", tmp_path / "saved.mp4", "--seed", "5") == 0
    assert (tmp_path / "run.mp4").read_bytes() == (tmp_path / "saved.mp4").read_bytes()


def test_sweep_in_one_batch_writes_a_contact_sheet(run_dir, photos, tmp_path, capsys):
    out = tmp_path / "sweep"
    assert generate(run_dir, photos / "astronaut.jpg", out, "--intensity", "0,10,20", "--batch-size", "0") == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["grid_png"] == str(out / "grid.png") and summary["steps"] == 2
    sheet = cv2.imread(str(out / "grid.png"))
    assert sheet.shape == (3 * 32, 4 * 32, 3)  # one row per intensity, one column per frame
    videos = [decode(out / f"intensity_{v}.mp4")[0] for v in (0, 10, 20)]
    assert all(v.shape == (4, 32, 32, 3) for v in videos) and not np.array_equal(videos[0], videos[2])
    assert decode(out / "grid.mp4")[0].shape == (4, 32, 96, 3)


def test_contact_sheet_places_each_frame():
    """Rows are videos, columns frames; tiles shrink to MAX_SHEET_TILE_PX; only the first tile of a row is
    labelled."""
    from human_motion.model.generate import make_contact_sheet

    videos = [np.stack([np.full((600, 400, 3), 10 * (3 * r + f), np.uint8) for f in range(3)]) for r in range(2)]
    sheet = make_contact_sheet(videos, ["a", "b"])
    assert sheet.shape == (2 * 256, 3 * 171, 3)  # 600x400 -> 256x171
    for r in range(2):
        for f in range(3):
            tile = sheet[r * 256 + 100:(r + 1) * 256, f * 171:(f + 1) * 171]  # below the label band
            assert (tile == 10 * (3 * r + f)).all()
    assert (sheet[:20, :171] != 0).any() and (sheet[:20, 171:342] == 10).all()  # "a" drawn on the first tile only


def test_steps_and_guidance_default_to_the_run_s_sampling_settings(run_dir, photos, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(run_dir, run, ignore=shutil.ignore_patterns("checkpoints", "logs"))
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "sampling": {"num_inference_steps": 1,
                                                                        "guidance_scale": 2.5}}))
    argv = ["generate", "--checkpoint", str(run), "--ref", str(photos / "astronaut.jpg"), "--prompt", "a man",
            "--action", "smiling", "--device", "cpu", "--out", str(tmp_path / "x.mp4")]
    assert main(argv) == 0  # no --steps / --guidance
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (summary["steps"], summary["guidance"]) == (1, 2.5)


def test_every_option_shows_its_default(capsys):
    with pytest.raises(SystemExit):
        main(["generate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for option in ("--intensity", "--seed", "--steps", "--guidance", "--batch-size", "--fps", "--gif", "--grid",
                   "--device", "--dtype", "--cpu-offload", "--face-detector", "--id-scale", "--save-reference"):
        help_text = text.split(f" {option} ", 1)[1].split(" --", 1)[0]
        assert "default" in help_text, option
    assert "(default: 4.0)" in text and "(default: 1)" in text


@pytest.mark.parametrize("case", ["truncated", "pickle", "missing"])
def test_damaged_checkpoints_are_one_line_refusals(run_dir, photos, tmp_path, capsys, case):
    import shutil

    import torch

    folder = tmp_path / "run"
    if case != "missing":
        shutil.copytree(run_dir, folder, ignore=shutil.ignore_patterns("checkpoints", "logs"))
        weights = folder / "adapter" / "diffusion_pytorch_model.safetensors"
        if case == "truncated":
            weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
        else:
            torch.save({"weight": torch.zeros(2)}, weights)
    assert generate(folder, photos / "astronaut.jpg", tmp_path / "x.mp4") == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("hm generate: error: ") and str(folder) in err[0], err
    assert {"truncated": "not a complete safetensors", "pickle": "is a pickle",
            "missing": "does not exist"}[case] in err[0]
    assert not (tmp_path / "x.mp4").exists()
