"""``hm eval`` end to end on a small set whose answers are known, and ``hm eval --protocol`` with a stand-in
pipeline (same interface as MotionCharacterPipeline) whose videos move by the asked intensity."""

from __future__ import annotations

import json
import pathlib
import types

import cv2
import numpy as np
import pytest

from human_motion.cli import main
from human_motion.media import write_mp4
from tests.eval.conftest import pan_video


def _small(frames: np.ndarray, side: int) -> np.ndarray:
    return np.stack([cv2.resize(f, (side, side), interpolation=cv2.INTER_AREA) for f in frames])


@pytest.fixture(scope="module")
def eval_set(tmp_path_factory, astronaut):
    root = tmp_path_factory.mktemp("eval_set")
    (root / "videos").mkdir()
    (root / "refs").mkdir()
    cv2.imwrite(str(root / "refs" / "astronaut.png"), cv2.cvtColor(astronaut, cv2.COLOR_RGB2BGR))
    rows = [{"video": "still.mp4", "ref": "astronaut.png", "prompt": "an astronaut", "action": "keeping still",
             "intensity": 0}]
    write_mp4(str(root / "videos" / "still.mp4"), _small(np.stack([astronaut] * 16), 256), 8.0)
    for k in (5, 10, 16):
        write_mp4(str(root / "videos" / f"pan{k}.mp4"), _small(pan_video(astronaut, k), 256), 8.0)
        rows.append({"video": f"pan{k}.mp4", "ref": "astronaut.png", "prompt": "an astronaut",
                     "action": "turning head", "intensity": k, "seed": 0})
    rows.append({"video": "missing.mp4", "ref": "astronaut.png", "prompt": "x", "intensity": 5})
    write_mp4(str(root / "videos" / "unlisted.mp4"), np.zeros((4, 64, 64, 3), np.uint8), 8.0)
    (root / "prompts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def test_hm_eval_end_to_end(eval_set, tiny_clip, tmp_path):
    out = tmp_path / "results"
    rc = main(["eval", str(eval_set / "videos"), "--refs", str(eval_set / "refs"), "--prompts",
               str(eval_set / "prompts.jsonl"), "--out", str(out), "--set", f"clip.model={tiny_clip}",
               "--set", "dynamic_degree.backend=dis"])
    assert rc == 0
    summary = json.loads((out / "results.json").read_text())
    rows = {r["video"]: r for r in map(json.loads, (out / "per_video.jsonl").read_text().splitlines())}
    agg = summary["aggregate"]
    assert summary["videos_listed"] == 5 and summary["videos_scored"] == 4
    assert "video" in rows["missing.mp4"]["errors"] and summary["unlisted"] == ["unlisted.mp4"]
    # Without their weights these two are not reported, never approximated.
    assert agg["dover"]["value"] is None and "DOVER weights" in agg["dover"]["not_reported"]
    assert agg["motion_smoothness"]["value"] is None and "AMT-S" in agg["motion_smoothness"]["not_reported"]
    # The reference image as a video (256 px, H.264): the same face.
    assert rows["still.mp4"]["face_similarity"] > 0.95 and rows["still.mp4"]["frames_without_face"] == 0
    # 256 px at 8 fps: threshold 6 px; pans of 2.5, 5 and 8 px per frame at 256 px -> only the fastest is dynamic.
    assert [rows[v]["dynamic"] for v in ("still.mp4", "pan5.mp4", "pan10.mp4", "pan16.mp4")] == [False] * 3 + [True]
    assert agg["dynamic_degree"]["value"] == pytest.approx(0.25)
    # The aggregate of a score is the mean of its per-video values; the reference as a video has CLIP-I ~1.
    scored = ("still.mp4", "pan5.mp4", "pan10.mp4", "pan16.mp4")
    for name in ("clip_i", "clip_t", "face_similarity"):
        assert agg[name]["n"] == 4 and agg[name]["value"] == pytest.approx(np.mean([rows[v][name] for v in scored]))
    assert rows["still.mp4"]["clip_i"] > 0.999 and rows["still.mp4"]["clip_i"] > rows["pan16.mp4"]["clip_i"]
    fid = summary["intensity_fidelity"]
    assert fid["n"] == 4 and fid["spearman"] == pytest.approx(1.0) and fid["mae"] < 1.0
    assert (out / "intensity_fidelity.png").is_file()
    table = (out / "table.md").read_text()
    assert "| MotionCharacter (paper, Table 1) | 0.869 | 0.998 | 0.449 | 0.633 | 0.227 | 0.609 |" in table
    assert "| this run (4 videos) | not reported | not reported | 0.250 |" in table
    assert "dlib_face_recognition_resnet_model_v1" in table  # the output names the embedder


class FakePipeline:
    """Stand-in for MotionCharacterPipeline (issue 7's interface): the astronaut panning ``intensity`` px/step."""

    calls: list = []

    def __init__(self, image):
        self.image = image

    def __call__(self, reference_image, prompt, action, intensity, num_frames, height, width, num_inference_steps,
                 guidance_scale, generator, output_type=None):
        assert reference_image.dtype == np.uint8 and reference_image.ndim == 3
        FakePipeline.calls.append((prompt, action, intensity, int(generator.initial_seed())))
        frames = pan_video(self.image, intensity, num_frames)
        frames = np.stack([cv2.resize(f, (width, height), interpolation=cv2.INTER_AREA) for f in frames])
        if output_type == "np":  # AnimateDiffPipeline's convention: a batch of videos, floats in [0, 1]
            return types.SimpleNamespace(frames=frames[None] / 255.0)
        return types.SimpleNamespace(frames=frames)


def test_protocol_generates_then_scores(astronaut, tmp_path, monkeypatch):
    from human_motion.eval import protocol

    refs = tmp_path / "refs"
    refs.mkdir()
    cv2.imwrite(str(refs / "a.jpg"), cv2.cvtColor(astronaut, cv2.COLOR_RGB2BGR))
    (tmp_path / "prompts.txt").write_text("an astronaut\n# a comment\nan astronaut in a suit\tnodding\n")
    monkeypatch.setattr(protocol, "load_pipeline", lambda checkpoint, device: FakePipeline(astronaut))
    FakePipeline.calls = []
    out = tmp_path / "out"
    argv = ["eval", "--protocol", "--checkpoint", str(tmp_path / "run"), "--refs", str(refs), "--prompts",
            str(tmp_path / "prompts.txt"), "--actions", "smiling", "--intensities", "0,4,8,12", "--seeds", "7",
            "--out", str(out), "--set", "metrics=[intensity_fidelity]", "--set", "protocol.num_frames=8",
            "--set", "protocol.height=256", "--set", "protocol.width=256"]
    assert main(argv) == 0
    assert len(FakePipeline.calls) == 8  # 2 prompts x 4 intensities x 1 seed
    assert ("an astronaut in a suit", "nodding", 12.0, 7) in FakePipeline.calls  # the line's own action
    assert ("an astronaut", "smiling", 0.0, 7) in FakePipeline.calls
    rows = [json.loads(line) for line in (out / "prompts.jsonl").read_text().splitlines()]
    assert len(rows) == 8 and all((out / "videos" / r["video"]).is_file() for r in rows)
    fid = json.loads((out / "results.json").read_text())["intensity_fidelity"]
    assert fid["n"] == 8 and fid["spearman"] > 0.95 and fid["mae"] < 1.0
    assert fid["within_group"] == {"groups": 2, "mean_spearman": pytest.approx(1.0), "fraction_monotone": 1.0}
    assert "measured mean rises strictly" in (out / "table.md").read_text()
    # A second run finds every video and generates nothing.
    FakePipeline.calls = []
    assert main(argv) == 0 and FakePipeline.calls == []


def test_plan_jobs_pairings():
    from human_motion.eval.protocol import plan_jobs

    refs = [pathlib.Path(f"r{i}.jpg") for i in range(3)]
    prompts = [(f"p{i}", None) for i in range(5)]
    cycle = plan_jobs(refs, prompts, ["a", "b"], [0, 10], [0], "cycle")
    assert len(cycle) == 10 and [j["ref"] for j in cycle[::2]] == ["r0.jpg", "r1.jpg", "r2.jpg", "r0.jpg", "r1.jpg"]
    assert [j["action"] for j in cycle[::2]] == ["a", "b", "a", "b", "a"]
    assert len(plan_jobs(refs, prompts, ["a", "b"], [0, 10], [0, 1], "product")) == 3 * 5 * 2 * 2 * 2
    assert len({j["video"] for j in plan_jobs(refs, prompts, ["a", "b"], [0, 10], [0, 1], "product")}) == 120


def test_bad_inputs_are_one_line_errors(eval_set, tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"video": "still.mp4", "intensity": "fast"}\n')
    assert main(["eval", str(eval_set / "videos"), "--prompts", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "intensity must be a number" in capsys.readouterr().err
    assert main(["eval", str(eval_set / "videos"), "--prompts", str(bad), "--set", "metrics=[fvd]"]) == 2
    assert "unknown 'fvd'" in capsys.readouterr().err
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    assert main(["eval", str(eval_set / "videos"), "--prompts", str(empty), "--out", str(tmp_path / "o2")]) == 2
    assert "empty.jsonl: no rows" in capsys.readouterr().err  # before any model is loaded (or downloaded)


def test_injected_interpolator_is_aggregated(eval_set, tmp_path):
    """The orchestration with a TRIVIAL interpolator (test only, not AMT-S): a still video scores ~1."""
    from human_motion.config import load_config
    from human_motion.eval.config import EvalConfig
    from human_motion.eval.inputs import read_eval_set
    from human_motion.eval.evaluate import Scorers, evaluate

    items, _ = read_eval_set(eval_set / "prompts.jsonl", eval_set / "videos", eval_set / "refs")
    still = [i for i in items if i.video == "still.mp4"]
    mean = lambda a, b: ((a.astype(np.uint16) + b) // 2).astype(np.uint8)  # noqa: E731
    scorers = Scorers(interpolator=mean, backends={"motion_smoothness": "neighbour mean (TEST ONLY)"},
                      not_reported={"dover": "needs DOVER weights"})
    summary = evaluate(load_config(EvalConfig), still, tmp_path, scorers=scorers)
    assert summary["aggregate"]["motion_smoothness"]["value"] == pytest.approx(1.0, abs=2e-3)
    assert summary["aggregate"]["face_similarity"]["value"] is None  # no face scorer given: no value
    row = next(line for line in (tmp_path / "table.md").read_text().splitlines() if line.startswith("| this run"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == "not reported" and abs(float(cells[2]) - 1.0) < 2e-3 and cells[6] == "n/a"


def test_missing_clip_model_is_a_one_line_error(eval_set, tmp_path, capsys):
    rc = main(["eval", str(eval_set / "videos"), "--refs", str(eval_set / "refs"), "--prompts",
               str(eval_set / "prompts.jsonl"), "--out", str(tmp_path), "--set", f"clip.model={tmp_path / 'none'}",
               "--set", "metrics=[clip]"])
    assert rc == 2 and "cannot be loaded" in capsys.readouterr().err


def test_weights_without_their_code_is_a_one_line_error(eval_set, tmp_path, capsys):
    args = ["eval", str(eval_set / "videos"), "--refs", str(eval_set / "refs"), "--prompts",
            str(eval_set / "prompts.jsonl"), "--out", str(tmp_path)]
    rc = main(args + ["--set", "metrics=[dover]", "--set", "dover.config=d.yml", "--set", "dover.weights=d.pth"])
    assert rc == 2 and "VQAssessment/DOVER" in capsys.readouterr().err
    rc = main(args + ["--set", "metrics=[dover]", "--set", "dover.weights=d.pth"])
    assert rc == 2 and "go together" in capsys.readouterr().err


def test_help_shows_the_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["eval", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "(eval) (default: eval)" in out and "(default: results)" in out and "(default: 0,5,10,20)" in out
