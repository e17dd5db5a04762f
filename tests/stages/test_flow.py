"""Motion intensity on clips whose motion is known: a real face photo moved k pixels per sampled frame."""

import cv2
import numpy as np
import pytest
import skimage.data

from human_motion.engine.config import FlowConfig
from human_motion.backends.optical_flow import OpenCVFlow, RaftFlow, make_flow, measure_intensity
from human_motion.sources.demo import render

FACE = (0.44, 0.255, 0.195)  # the astronaut's face in skimage's photo


def sampled_pan(k: float) -> np.ndarray:
    """16 frames at 4 fps of a pan at k px per sampled step (the demo renders 8 fps: take every other frame)."""
    return render(skimage.data.astronaut(), FACE, "pan", k)[::2][:16]


@pytest.mark.parametrize("backend", ["dis", "farneback"])
@pytest.mark.parametrize("k", [2.0, 5.0, 10.0])
def test_intensity_of_known_motion_is_about_k(backend, k):
    intensity, per_step, maps = measure_intensity(sampled_pan(k), OpenCVFlow(backend), 256, 512)
    assert intensity == pytest.approx(k, rel=0.2, abs=0.5)
    assert per_step.shape == (15,) and maps.shape == (15, 64, 64) and maps.dtype == np.uint8
    assert maps.max() <= 255 and maps.mean() > 0


def test_static_clip_has_about_zero_intensity():
    intensity, _, maps = measure_intensity(sampled_pan(0.0), OpenCVFlow("dis"), 256, 512)
    assert intensity < 0.3
    assert maps.max() <= 1


def test_a_sweeping_pan_goes_right_for_n_steps_then_left_at_the_same_speed():
    """demo option pan_sweep_steps=8: every 16-step window is 8 steps right, then 8 left, at k px per step."""
    import cv2

    frames = render(skimage.data.astronaut(), FACE, "pan", 10.0, windows=2, pan_sweep_steps=8)[::2][:32]
    small = [cv2.cvtColor(cv2.resize(f, (256, 256), interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2GRAY)
             for f in frames]
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    dx = np.array([np.median(dis.calc(a, b, None)[..., 0]) * 2 for a, b in zip(small, small[1:])])  # 512-px units
    assert np.all(dx[:8] > 8) and np.all(dx[8:16] < -8) and np.all(dx[16:24] > 8)  # both windows alike
    intensity, _, _ = measure_intensity(frames[:16], OpenCVFlow("dis"), 256, 512)
    assert intensity == pytest.approx(10.0, rel=0.2)


def test_intensity_is_reported_at_output_scale_whatever_the_work_resolution():
    frames = sampled_pan(8.0)
    a, _, _ = measure_intensity(frames, OpenCVFlow("dis"), 128, 512)
    b, _, _ = measure_intensity(frames, OpenCVFlow("dis"), 512, 512)
    assert a == pytest.approx(8.0, rel=0.25) and b == pytest.approx(8.0, rel=0.2)


def test_raft_runs_through_the_real_code_path_with_local_weights(tmp_path):
    """RAFT-small with weights saved to a local file (random init: no download). Random weights give no known flow,
    but the code around the model does: the file's weights are the ones loaded; the model is fed every consecutive
    pair, in order, scaled to [-1, 1] at the work size, in calls of ``raft_pairs_per_call`` pairs with
    ``raft_iters`` updates; and a field the model returns (its last update) comes out as the intensity it makes."""
    import torch
    from torchvision.models.optical_flow import raft_small

    torch.manual_seed(0)
    path = tmp_path / "raft_small.pth"
    saved = raft_small(weights=None).state_dict()
    torch.save(saved, path)
    flow = make_flow(FlowConfig(backend="raft_small", raft_weights=str(path), raft_iters=2, raft_pairs_per_call=2,
                                device="cpu"))
    assert isinstance(flow, RaftFlow)
    assert all(torch.equal(v, saved[k]) for k, v in flow.model.state_dict().items())
    frames = sampled_pan(4.0)[:4]  # 512 px: 3 pairs, so calls of 2 pairs and 1
    small = np.stack([f[::4, ::4] for f in frames])  # 128x128, RAFT's smallest input
    out = flow(small)  # the real model, once
    assert out.shape == (3, 128, 128, 2) and out.dtype == np.float32 and np.isfinite(out).all()

    calls = []

    def known(a, b, num_flow_updates):
        """A square of a quarter of the frame's side moves by (3, 4): 5 px per step at the work size."""
        calls.append((a, b, num_flow_updates))
        field = torch.zeros(len(a), 2, *a.shape[2:])  # (p, 2, h, w)
        field[:, 0, 32:64, 64:96], field[:, 1, 32:64, 64:96] = 3.0, 4.0
        return [torch.full_like(field, 99.0), field]  # RAFT returns every update's estimate; the last one counts

    flow.model = known
    intensity, per_step, maps = measure_intensity(frames, flow, 128, 512)
    assert [(len(a), n) for a, _, n in calls] == [(2, 2), (1, 2)]
    resized = np.stack([cv2.resize(f, (128, 128), interpolation=cv2.INTER_AREA) for f in frames])
    fed = torch.from_numpy(resized).permute(0, 3, 1, 2).float() / 127.5 - 1.0  # (t, 3, h, w) in [-1, 1]
    torch.testing.assert_close(torch.cat([a for a, _, _ in calls]), fed[:-1])
    torch.testing.assert_close(torch.cat([b for _, b, _ in calls]), fed[1:])
    assert intensity == pytest.approx(20.0) and per_step == pytest.approx([20.0] * 3)  # 5 px at 128 is 20 at 512
    assert maps.shape == (3, 64, 64) and (maps[:, 16:32, 32:48] == 20).all() and maps.sum() == 3 * 16 * 16 * 20


def test_face_region_motion_ignores_motion_outside_the_face():
    from human_motion.stages.flow import face_region_motion

    mags = np.zeros((2, 64, 64), np.float32)
    mags[:, :, 40:] = 20.0  # something moving at the right edge
    mags[:, 8:24, 8:24] = 3.0  # the face
    boxes = np.array([[64, 64, 192, 192]] * 2, np.float32)  # at 512 scale
    assert face_region_motion(mags, boxes, 512) == pytest.approx(3.0)
