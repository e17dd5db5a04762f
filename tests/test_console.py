"""filtered_stderr: native libraries' log lines written to file descriptor 2 are dropped, everything else passes,
and a progress bar redrawn in place shows before its line ends."""

from __future__ import annotations

import os

from human_motion.console import filtered_stderr

ABSL = b"W0000 00:00:1796076596.061366   28255 inference_feedback_manager.cc:114] Feedback manager requires...\n"
RAY = b"[2026-11-30 22:10:42,324 E 29368 29368] core_worker.cc:2465: Failed to register worker\n"
TFLITE = b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n"


def test_native_lines_are_dropped_and_the_rest_passes(capfd):
    with filtered_stderr() as console:
        for data in (ABSL, b"UserWarning: ours, kept\n", RAY, TFLITE, b"partial ", b"line\n"):
            os.write(2, data)
        console.write("progress of our own\n")
    err = capfd.readouterr().err
    assert "inference_feedback" not in err and "core_worker" not in err and "TensorFlow Lite" not in err
    assert "UserWarning: ours, kept\n" in err and "partial line\n" in err and "progress of our own\n" in err


def test_a_bar_redrawn_in_place_shows_before_its_line_ends():
    """The filter's output goes to a pipe the test reads: a bar drawn twice with no newline yet shows its first
    drawing as soon as the filter forwards it (the read blocks until then; nothing waits on a clock), and the last
    drawing with its newline arrives before the filter's output closes."""
    import select

    read_fd, write_fd = os.pipe()
    real_stderr = os.dup(2)
    os.dup2(write_fd, 2)  # what filtered_stderr takes for the terminal
    os.close(write_fd)
    try:
        with filtered_stderr():
            os.write(2, b"\r 10%|#         |")
            os.write(2, b"\r 20%|##        |")
            seen = b""
            while b"10%" not in seen:
                # select's limit only ends a test that has already failed: the bar was held back
                assert select.select([read_fd], [], [], 60)[0], f"the bar was not shown before its line ended: {seen}"
                seen += os.read(read_fd, 4096)
            assert b"\r 10%|#         |\r" in seen  # shown while the bar is still being drawn
            os.write(2, b"\r100%|##########|\n")
    finally:
        os.dup2(real_stderr, 2)
        os.close(real_stderr)
    with os.fdopen(read_fd, "rb") as rest:  # to its end: every copy of the pipe's writer closes with the filter
        seen += rest.read()
    assert seen.endswith(b"100%|##########|\n") and b"20%" in seen


def test_disabled_filters_nothing(capfd):
    with filtered_stderr(enabled=False):
        os.write(2, ABSL)
    assert "inference_feedback" in capfd.readouterr().err
