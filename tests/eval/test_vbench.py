"""Dynamic Degree and Motion Smoothness (VBench's definitions) on inputs with known answers.

The flow model is injected: OpenCV DIS measures the test's pans to within a few percent, so the known-answer tests
do not depend on RAFT weights; RAFT itself is checked for plumbing with random weights the test saves.
"""

from __future__ import annotations

import numpy as np
import pytest

from human_motion.eval.vbench import (
    VBenchRaft, dynamic_degree, dynamic_degree_params, motion_smoothness, pad_to_multiple, top5_mean,
)
from human_motion.backends.optical_flow import OpenCVFlow
from tests.eval.conftest import pan_video


def test_params_follow_vbench():
    assert dynamic_degree_params(512, 512, 16, 8.0) == (12.0, 4)  # 6 * 512 / 256, round(4 * 16 / 16)
    assert dynamic_degree_params(512, 768, 16, 24.0) == (12.0, 4)  # min(H, W); factor 1 above 8 fps
    assert dynamic_degree_params(256, 256, 16, 4.0) == (12.0, 4)  # factor max(1, 8 / fps) = 2 at 4 fps
    assert dynamic_degree_params(512, 512, 15, 8.0)[1] == 4  # round(3.75)
    assert dynamic_degree_params(512, 512, 10, 8.0)[1] == 2  # Python's round(2.5) == 2, as VBench


def test_top5_mean_and_padding():
    flow = np.zeros((20, 20, 2), np.float32)
    flow.reshape(-1, 2)[:20, 0] = 10.0  # exactly 5% of 400 pixels move by 10
    assert top5_mean(flow) == pytest.approx(10.0)
    padded = pad_to_multiple(np.zeros((3, 100, 130, 3), np.uint8))
    assert padded.shape == (3, 104, 136, 3)


def test_identical_frames_are_not_dynamic(astronaut):
    frames = np.stack([astronaut] * 16)
    result = dynamic_degree(frames, 8.0, OpenCVFlow("dis"))
    assert result["dynamic"] is False and result["pairs_above"] == 0
    assert max(result["pair_scores"]) < 1e-3


def test_pans_against_the_threshold(astronaut):
    flow = OpenCVFlow("dis")  # 512 px at 8 fps: threshold 12 px, 4 pairs needed
    slow, fast = dynamic_degree(pan_video(astronaut, 5), 8.0, flow), dynamic_degree(pan_video(astronaut, 16), 8.0, flow)
    assert not slow["dynamic"] and fast["dynamic"]
    assert np.median(fast["pair_scores"]) == pytest.approx(16, rel=0.05)
    # The same 16 px/frame video declared at 4 fps: VBench doubles the threshold (24 px), so it is not dynamic.
    assert not dynamic_degree(pan_video(astronaut, 16), 4.0, flow)["dynamic"]


def test_frame_sampling_at_high_fps():
    seen = {}

    def fake_flow(frames):
        seen["shape"] = frames.shape
        return np.zeros((len(frames) - 1, *frames.shape[1:3], 2), np.float32)

    result = dynamic_degree(np.zeros((48, 100, 100, 3), np.uint8), 24.0, fake_flow)
    assert result["frame_interval"] == 3 and result["sampled_frames"] == 16
    assert seen["shape"] == (16, 104, 104, 3)  # padded to a multiple of 8 before the flow


def test_raft_plumbing_with_saved_random_weights(tmp_path, astronaut):
    """VBenchRaft with random weights the test saves: the file's weights are the ones loaded and the real model runs
    once. Random weights give no known flow, but the code around the model does: a stand-in network that records
    its inputs and returns known fields shows every consecutive pair of the padded frames fed in order, scaled to
    [-1, 1], in batches of ``batch_pairs`` with ``iters`` updates, and each field's last update scored as VBench
    scores it."""
    import cv2
    import torch
    from torchvision.models.optical_flow import raft_small

    torch.manual_seed(0)
    saved = raft_small(weights=None).state_dict()
    torch.save(saved, tmp_path / "raft_small.pth")
    raft = VBenchRaft("raft_small", str(tmp_path / "raft_small.pth"), iters=2, batch_pairs=2)
    assert all(torch.equal(v, saved[k]) for k, v in raft.model.state_dict().items())
    out = raft(np.stack([cv2.resize(astronaut, (128, 128))] * 2))
    assert out.shape == (1, 128, 128, 2) and out.dtype == np.float32 and np.isfinite(out).all()

    frames = np.stack([cv2.resize(f, (130, 124)) for f in pan_video(astronaut, 8, num_frames=4)])  # padded: 128x136
    calls, speeds = [], [(3.0, 4.0), (0.0, 2.0), (6.0, 8.0)]  # 5, 2 and 10 px, pair by pair

    def known(a, b, num_flow_updates):
        calls.append((a, b, num_flow_updates))
        done = sum(len(x) for x, _, _ in calls[:-1])
        field = torch.zeros(len(a), 2, *a.shape[2:])  # (p, 2, h, w)
        for i, (dx, dy) in enumerate(speeds[done:done + len(a)]):
            field[i, 0], field[i, 1] = dx, dy
        return [torch.full_like(field, 99.0), field]  # RAFT returns every update's estimate; the last one counts

    raft.model = known
    result = dynamic_degree(frames, 8.0, raft)
    assert [(len(a), n) for a, _, n in calls] == [(2, 2), (1, 2)]
    fed = torch.from_numpy(pad_to_multiple(frames)).permute(0, 3, 1, 2).float() / 127.5 - 1.0  # (t, 3, 128, 136)
    torch.testing.assert_close(torch.cat([a for a, _, _ in calls]), fed[:-1])
    torch.testing.assert_close(torch.cat([b for _, b, _ in calls]), fed[1:])
    assert result["pair_scores"] == [5.0, 2.0, 10.0]
    assert result["threshold_px"] == pytest.approx(6.0 * 124 / 256) and result["pairs_above"] == 2


# --- Motion Smoothness: the scoring logic only, with a TRIVIAL interpolator (the mean of the two neighbours).
# This is not AMT-S and its numbers are not VBench's Motion Smoothness; it checks the frame selection and the score.

def _mean_interpolator(a, b):
    return ((a.astype(np.uint16) + b) // 2).astype(np.uint8)


def test_smoothness_scoring_identical_frames(astronaut):
    result = motion_smoothness(np.stack([astronaut] * 16), _mean_interpolator)
    assert result["motion_smoothness"] == pytest.approx(1.0)
    assert result["interpolated_frames"] == 7  # even frames 0..14 -> 7 middles, compared with frames 1..13


def test_smoothness_scoring_known_error():
    # Even frames black, odd frames at 51: the interpolated middles (black) miss every odd frame by 51.
    frames = np.zeros((9, 8, 8, 3), np.uint8)
    frames[1::2] = 51
    assert motion_smoothness(frames, _mean_interpolator)["motion_smoothness"] == pytest.approx((255 - 51) / 255)
    # A linear brightness ramp is interpolated exactly by the mean: perfectly smooth.
    ramp = np.stack([np.full((8, 8, 3), 10 * i, np.uint8) for i in range(9)])
    assert motion_smoothness(ramp, _mean_interpolator)["motion_smoothness"] == pytest.approx(1.0)


@pytest.mark.slow
def test_amt_interpolator_plumbing_with_random_weights(tmp_path, astronaut):
    """AmtInterpolator on VBench's own AMT-S code with random weights the test saves: the file's weights are the ones
    loaded and the real network runs once. Random weights interpolate nothing sensible, but the code around the
    network has known answers: a stand-in that returns the mean of its two inputs shows frames fed in [0, 1], padded
    to a multiple of 16 (100x90 -> 112x96), at t = 0.5 and scale 1 on the CPU, and the middle frame unpadded back to
    uint8 pixels, the mean of its neighbours. Runs where `pip install vbench omegaconf` was done; skipped otherwise."""
    import os

    import cv2
    import torch

    pytest.importorskip("omegaconf")
    pytest.importorskip("vbench.third_party.amt.utils.build_utils")
    import vbench
    from omegaconf import OmegaConf
    from vbench.third_party.amt.utils.build_utils import build_from_cfg

    from human_motion.eval.vbench import AmtInterpolator

    config = os.path.join(os.path.dirname(vbench.__file__), "third_party", "amt", "cfgs", "AMT-S.yaml")
    torch.manual_seed(0)
    saved = build_from_cfg(OmegaConf.load(config).network).state_dict()
    torch.save({"state_dict": saved}, tmp_path / "amt-s.pth")
    interpolate = AmtInterpolator(config, str(tmp_path / "amt-s.pth"), "cpu")
    assert all(torch.equal(v, saved[k]) for k, v in interpolate.model.state_dict().items())
    a, b = (cv2.resize(f, (100, 90)) for f in pan_video(astronaut, 16, num_frames=2))  # not multiples of 16
    middle = interpolate(a, b)  # the real network, once
    assert middle.shape == a.shape and middle.dtype == np.uint8

    calls = []

    def mean_of_inputs(in0, in1, embt, scale_factor, eval):
        calls.append((in0, in1, float(embt.flatten()[0]), scale_factor, eval))
        return {"imgt_pred": (in0 + in1) / 2}

    interpolate.model = mean_of_inputs
    middle = interpolate(a, b)
    ((in0, in1, t, scale, eval_mode),) = calls
    assert in0.shape == in1.shape == (1, 3, 96, 112) and (t, scale, eval_mode) == (0.5, 1.0, True)
    for fed, frame in ((in0, a), (in1, b)):
        inner = fed[0, :, 3:93, 6:106].permute(1, 2, 0).numpy()  # the padding split evenly: 3 + 3 rows, 6 + 6 columns
        np.testing.assert_allclose(inner, frame / 255.0, atol=1e-6)
    expected = (a.astype(np.float64) + b) / 2
    assert middle.shape == a.shape and middle.dtype == np.uint8
    assert np.abs(middle - expected).max() <= 1.0  # uint8 rounding of the mean
    smooth = motion_smoothness(np.stack([a, expected.astype(np.uint8), b]), interpolate)
    assert smooth["interpolated_frames"] == 1 and smooth["motion_smoothness"] > 254 / 255
