"""Paper Eq. 5-7 and the crop geometry on hand-made arrays."""

import numpy as np
import pytest

from human_motion.metrics import (
    box_side, compute_flow_intensity, flow_maps_uint8, interpolate_missing, square_crop_box,
)


def test_intensity_matches_hand_computed_eq_5_to_7():
    # Step 0: 4 pixels, magnitudes [0, 0, 2, 6]: tau = 2, mask = {6}, f_fg = 6.
    # Step 1: magnitudes [1, 3, 3, 1]: tau = 2, mask = {3, 3}, f_fg = 3.  M = (6 + 3) / 2 = 4.5
    mags = np.array([[[0, 0], [2, 6]], [[1, 3], [3, 1]]], dtype=np.float32)
    m, per_step, fg = compute_flow_intensity(mags)
    assert per_step.tolist() == [6.0, 3.0]
    assert m == pytest.approx(4.5)
    np.testing.assert_array_equal(fg, [[[0, 0], [0, 6]], [[0, 3], [3, 0]]])


def test_static_field_has_zero_intensity_and_uniform_motion_its_speed():
    m, per_step, _ = compute_flow_intensity(np.zeros((3, 8, 8)))
    assert m == 0.0 and per_step.tolist() == [0, 0, 0]
    # Every pixel moving by 5: the strict mask is empty, and the foreground motion is 5 itself.
    m, _, _ = compute_flow_intensity(np.full((2, 8, 8), 5.0))
    assert m == pytest.approx(5.0)


def test_moving_square_over_still_background():
    mags = np.zeros((4, 64, 64), np.float32)
    mags[:, 10:30, 10:30] = 7.0  # only the "face" moves
    m, _, fg = compute_flow_intensity(mags)
    assert m == pytest.approx(7.0)
    maps = flow_maps_uint8(fg, 8)
    assert maps.dtype == np.uint8 and maps.shape == (4, 8, 8)
    assert maps.max() == 7 and maps[:, 6:, 6:].max() == 0


def test_flow_maps_clip_at_255():
    maps = flow_maps_uint8(np.full((1, 16, 16), 300.0, np.float32), 4)
    assert maps.max() == 255


def test_square_crop_contains_all_boxes_and_stays_inside_frame():
    boxes = np.array([[100, 50, 200, 150], [140, 60, 240, 160]], np.float32)
    x0, y0, x1, y1 = square_crop_box(boxes, 640, 480, 1.5)
    assert x1 - x0 == y1 - y0 == 210  # 1.5 x the union's longer side (140)
    assert x0 <= 100 and x1 >= 240 and y0 <= 50 and y1 >= 160
    # Near the border: shifted inside, and never larger than the frame's short side.
    x0, y0, x1, y1 = square_crop_box(np.array([[0, 0, 300, 300]], np.float32), 640, 360, 2.0)
    assert (x0, y0, x1, y1) == (0, 0, 360, 360)


def test_interpolate_missing_boxes_and_side():
    boxes = np.array([[0, 0, 10, 10], [0, 0, 0, 0], [20, 20, 30, 30]], np.float32)
    out = interpolate_missing(boxes, np.array([True, False, True]))
    np.testing.assert_allclose(out[1], [10, 10, 20, 20])
    assert box_side(np.array([[0, 0, 4, 9]], np.float32))[0] == pytest.approx(6.0)


def test_segments_start_at_cuts_track_jumps_and_a_face_found_again():
    from human_motion.metrics import content_change, segment_starts

    still = np.full((8, 8, 3), 100, np.uint8)
    assert content_change(still, still) == 0.0
    assert content_change(still, np.full((8, 8, 3), 160, np.uint8)) == 60.0
    boxes = np.tile(np.array([100, 100, 200, 200], np.float32), (8, 1))
    present = np.ones(8, bool)
    assert segment_starts([0.0] * 7, boxes, present, 27.0, 0.3) == [0]
    assert segment_starts([0, 0, 0, 40, 0, 0, 0], boxes, present, 27.0, 0.3) == [0, 4]  # a cut after frame 3
    jumped = boxes.copy()
    jumped[5:] += 300  # the tracked face is elsewhere from frame 5 on
    assert segment_starts([0.0] * 7, jumped, present, 27.0, 0.3) == [0, 5]
    gap = present.copy()
    gap[2:4] = False  # lost for two frames, found again at 4
    assert segment_starts([0.0] * 7, boxes, gap, 27.0, 0.3) == [0, 4]
