"""`hm eval` with the default metric list on a machine without the models: it scores what it can, names what it
skipped and how to enable it, touches no network with HF_HUB_OFFLINE=1, and flags values on unreliable inputs."""

from __future__ import annotations

import json
import socket

import cv2
import numpy as np
import pytest

from human_motion.cli import main
from human_motion.eval.report import aggregate, markdown_table
from human_motion.media import write_mp4


@pytest.fixture
def no_network(monkeypatch, tmp_path):
    """Empty model caches, HF_HUB_OFFLINE=1, and every way out recorded and refused."""
    import huggingface_hub
    import torch.hub
    import torchvision.models.optical_flow  # noqa: F401 - imported before the patches, so none leaks into it
    from huggingface_hub import constants

    attempts = []

    def refuse(name):
        def call(*args, **kwargs):
            attempts.append(name)
            raise OSError(f"test: no network ({name})")
        return call

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf_cache"))
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "torch_hub"))
    monkeypatch.setattr(socket.socket, "connect", refuse("socket.connect"))
    monkeypatch.setattr(socket, "create_connection", refuse("socket.create_connection"))
    for module, name in [(torch.hub, "load_state_dict_from_url"), (torch.hub, "download_url_to_file"),
                         (huggingface_hub, "hf_hub_download"), (huggingface_hub, "snapshot_download")]:
        monkeypatch.setattr(module, name, refuse(name))
    return attempts


def test_default_metrics_finish_offline_and_flag_tiny_noise_videos(astronaut, tmp_path, no_network, capsys):
    (tmp_path / "videos").mkdir()
    (tmp_path / "refs").mkdir()
    cv2.imwrite(str(tmp_path / "refs" / "a.png"), cv2.cvtColor(astronaut, cv2.COLOR_RGB2BGR))
    rng = np.random.default_rng(0)
    rows = []
    for i in range(3):  # 32x32 noise: whatever a detector finds there is not a face to compare with the paper's
        write_mp4(str(tmp_path / "videos" / f"noise{i}.mp4"), rng.integers(0, 255, (4, 32, 32, 3), np.uint8), 8.0)
        rows.append({"video": f"noise{i}.mp4", "ref": "a.png", "prompt": "a person", "intensity": 5})
    (tmp_path / "prompts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "results"
    assert main(["eval", str(tmp_path / "videos"), "--refs", str(tmp_path / "refs"),
                 "--prompts", str(tmp_path / "prompts.jsonl"), "--out", str(out)]) == 0
    assert no_network == []  # not one download or connection attempted
    captured = capsys.readouterr()
    assert "Downloading" not in captured.out + captured.err
    json.loads(captured.out[:captured.out.rindex("}") + 1])  # stdout holds the results, nothing else before them

    summary = json.loads((out / "results.json").read_text())
    skipped = summary["not_reported"]
    assert "HF_HUB_OFFLINE=1" in skipped["clip_i"] and "--set clip.model=" in skipped["clip_t"]
    assert "HF_HUB_OFFLINE=1" in skipped["dynamic_degree"]
    assert "dynamic_degree.raft_weights" in skipped["dynamic_degree"]
    assert "smoothness.amt_weights" in skipped["motion_smoothness"] and "dover.weights" in skipped["dover"]
    assert all(reason.startswith("skipped: ") for reason in skipped.values())
    assert summary["intensity_fidelity"]["n"] == 3  # computed: the build's own flow code needs no weights
    face = summary["aggregate"]["face_similarity"]
    table = (out / "table.md").read_text()
    for reason in skipped.values():
        assert reason in table  # the status column names the reason and the setting
    if face["value"] is not None:  # a detector may see faces in noise; never as a plain number beside the paper's
        assert any("smaller than 112 px" in w for w in face["warnings"])
        assert f"{face['value']:.3f} ⚠" in table and "| Face Similarity | " in table
    else:
        assert "| Face Similarity | n/a |" in table


def test_unreliable_face_similarity_is_flagged_not_reported_plainly():
    """The issue's case as data: faces in 4 of 12 frames of 32x32 videos."""
    rows = [{"video": f"v{i}", "size": [32, 32], "face_similarity": 0.859, "frames_with_face": n,
             "frames_without_face": 4 - n, "errors": {}} for i, n in enumerate((2, 1, 1))]
    agg = aggregate(rows, {}, {"face_similarity": 112, "clip": 224})
    warnings = agg["face_similarity"]["warnings"]
    assert warnings[0] == "faces found in 4 of 12 frames (under half)"
    assert warnings[1].startswith("3 of 3 videos are smaller than 112 px")
    assert "warnings" not in agg["clip_i"]  # no value, nothing to flag
    table = markdown_table({"aggregate": agg, "videos_scored": 3, "backends": {}, "not_reported": {}})
    this_run = next(line for line in table.splitlines() if line.startswith("| this run"))
    assert this_run.split("|")[7].strip() == "0.859 ⚠"
    assert "| Face Similarity | 0.859 ⚠ | 3 | unreliable: faces found in 4 of 12 frames (under half); 3 of 3" in table
    # Enough faces on large frames: a plain number.
    rows = [{"video": "v", "size": [512, 512], "face_similarity": 0.6, "frames_with_face": 16,
             "frames_without_face": 0, "errors": {}}]
    assert "warnings" not in aggregate(rows, {}, {"face_similarity": 112})["face_similarity"]


def test_an_unreachable_hub_is_tried_once_then_skipped(monkeypatch, tmp_path):
    """Online (HF_HUB_OFFLINE unset) but the hub cannot be reached: one try per model, then the metric is skipped."""
    import torch.hub
    import torchvision.models.optical_flow  # noqa: F401 - imported before the patches, so none leaks into it
    from huggingface_hub import constants

    from human_motion.config import load_config
    from human_motion.eval import clip_scores
    from human_motion.eval.config import EvalConfig
    from human_motion.eval.scorers import make_scorers

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf_cache"))
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "torch_hub"))
    tries = []

    def unreachable(*args, **kwargs):
        tries.append(args[0] if args else kwargs)
        raise OSError("test: the hub is unreachable")

    monkeypatch.setattr(clip_scores.ClipScorer, "__init__", unreachable)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", unreachable)
    cfg = load_config(EvalConfig, overrides=["metrics=[clip,dynamic_degree]"])
    s = make_scorers(cfg)
    assert len(tries) == 2  # CLIP once, RAFT once
    assert s.clip is None and s.dynamic_flow is None
    assert "cannot be loaded (OSError: test: the hub is unreachable)" in s.not_reported["clip_i"]
    assert "could not be downloaded" in s.not_reported["dynamic_degree"]
