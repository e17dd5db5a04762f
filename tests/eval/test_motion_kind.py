"""The kind of motion from a flow field: hand-made fields with known answers, then real demo clips through DIS."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import skimage.data

from human_motion.eval.motion_kind import KINDS, STILL, classify, clip_components, confusion, fit_components, motion_kind

from .conftest import ASTRONAUT_FACE


def field(tx=0.0, ty=0.0, a=0.0, b=0.0, size=32) -> np.ndarray:
    """u = tx + a x - b y, v = ty + b x + a y around the frame centre: (size, size, 2)."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float64) - (size - 1) / 2
    return np.stack([tx + a * x - b * y, ty + b * x + a * y], -1).astype(np.float32)


def rms_radius(size=32) -> float:
    y, x = np.mgrid[0:size, 0:size].astype(np.float64) - (size - 1) / 2
    return float(np.sqrt(np.mean(x * x + y * y)))


@pytest.mark.parametrize("params, kind", [
    (dict(tx=3.0), "horizontal"), (dict(tx=-3.0), "horizontal"), (dict(ty=-2.0), "vertical"),
    (dict(a=0.1), "zoom"), (dict(a=-0.1), "zoom"), (dict(b=0.1), "rotation"),
    (dict(tx=0.5, a=0.1), "zoom"), (dict(ty=2.0, b=0.05), "vertical"),
])
def test_a_known_field_gives_its_components_and_kind(params, kind):
    comp = fit_components(field(**params))
    r = rms_radius()
    expected = [params.get("tx", 0), params.get("ty", 0), params.get("a", 0) * r, params.get("b", 0) * r]
    np.testing.assert_allclose(comp, expected, atol=1e-5)
    assert classify(np.abs(comp)) == kind


def test_a_sweep_there_and_back_counts_both_ways_and_noise_averages_out():
    rng = np.random.default_rng(0)
    flows = np.stack([field(tx=2.0), field(tx=-2.0)]) + rng.normal(0, 0.5, (2, 32, 32, 2)).astype(np.float32)
    comp = clip_components(flows)
    assert comp[0] == pytest.approx(2.0, abs=0.1) and comp[1:].max() < 0.1


def test_still_below_the_threshold_and_bad_shapes_raise():
    assert classify(clip_components(field()[None]), min_px=0.5) == STILL
    assert classify(clip_components(field(tx=1.0)[None]), min_px=0.5) == "horizontal"
    with pytest.raises(ValueError, match="steps, h, w, 2"):
        clip_components(field())
    with pytest.raises(ValueError, match="4 values"):
        classify(np.zeros(3))


def test_confusion_counts_rows_asked_columns_found():
    c = confusion(["zoom", "zoom", "vertical", "rotation"], ["zoom", "horizontal", "vertical", STILL])
    assert c["labels"] == [*KINDS, STILL]
    assert c["matrix"]["zoom"] == {"horizontal": 1, "vertical": 0, "zoom": 1, "rotation": 0, STILL: 1 - 1}
    assert c["matrix"]["rotation"][STILL] == 1
    assert c["n"] == 4 and c["accuracy"] == 0.5
    with pytest.raises(ValueError, match="'spin' is not one of"):
        confusion(["spin"], ["zoom"])


# Demo speeds whose build intensity is about 10 px per step at 512 px (sources/demo.py: a pan of k px/step measures
# k; a rotation of 1 degree/step about 4; a zoom of 1 %/step about 2.4).
DEMO = {"horizontal": ("pan", 10.0), "vertical": ("vertical", 10.0), "zoom": ("zoom", 4.2), "rotation": ("rotate", 2.5)}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("size", [32, 128])
def test_demo_clips_are_told_apart_by_dis_even_at_32_px(kind, size):
    """The demo's sweeps, the first 8 sampled frames (what the benchmark trains on), resized to ``size``."""
    from human_motion.backends.optical_flow import OpenCVFlow
    from human_motion.sources.demo import render

    motion, speed = DEMO[kind]
    frames = render(skimage.data.astronaut(), ASTRONAUT_FACE, motion, speed, pan_sweep_steps=8)[::2][:8]
    small = np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) for f in frames])
    found, comp = motion_kind(small, OpenCVFlow("dis"), out_px=512, min_px=1.0)
    assert found == kind, comp
    assert comp[kind] > 2 * max(v for k, v in comp.items() if k != kind)
