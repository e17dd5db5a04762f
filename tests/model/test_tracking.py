"""What a run shows while it trains: progress on the console, trackers through accelerate, validation clips."""

from __future__ import annotations

import io

import numpy as np
import pytest

from human_motion.config import ConfigError
from human_motion.model.tracking import Progress, frame_grid, log_videos, resolve_trackers


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_plain_progress_lines_when_not_a_terminal():
    stream = io.StringIO()
    progress = Progress(total=10, initial=0, enabled=True, every_s=3600, stream=stream)
    for step in range(1, 11):
        progress.update(step, loss=0.5, lr=1e-5)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2 and "\r" not in stream.getvalue()  # the first step and the last, nothing in between
    assert lines[0].startswith("hm train: step 1/10 (10%) loss 0.5000") and "steps/s ETA" in lines[0]
    assert lines[1].startswith("hm train: step 10/10 (100%)")
    resumed = io.StringIO()
    Progress(total=10, initial=4, enabled=True, every_s=0, stream=resumed).update(5, 0.1, 1e-5)
    assert resumed.getvalue().startswith("hm train: step 5/10")
    quiet = io.StringIO()
    Progress(total=10, initial=0, enabled=False, stream=quiet).update(1, 0.1, 1e-5)  # other ranks print nothing
    assert quiet.getvalue() == ""


def test_progress_bar_on_a_terminal():
    stream = Terminal()
    progress = Progress(total=4, initial=0, enabled=True, stream=stream)
    for step in range(1, 5):
        progress.update(step, loss=0.25, lr=1e-4)
    progress.close()
    out = stream.getvalue()
    assert "4/4" in out and "step/s" in out and "loss=0.2500" in out and "\r" in out


def test_resolve_trackers():
    from accelerate.tracking import get_available_trackers

    available = {str(getattr(t, "value", t)) for t in get_available_trackers()}
    assert resolve_trackers("none") == []
    assert resolve_trackers("auto") == (["tensorboard"] if "tensorboard" in available else [])
    with pytest.raises(ConfigError, match="unknown tracker 'tensorbored'"):
        resolve_trackers("tensorbored")
    missing = next((n for n in ("wandb", "mlflow", "aim") if n not in available), None)
    if missing:
        with pytest.raises(ConfigError, match=f"pip install {missing}"):
            resolve_trackers(missing)


def clips() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, (2, 4, 16, 16, 3), dtype=np.uint8)  # (n, f, H, W, 3)


def test_validation_clips_reach_a_tracker_that_takes_images(tmp_path):
    from accelerate import Accelerator
    from accelerate.tracking import GeneralTracker

    class Images(GeneralTracker):
        name, requires_logging_directory = "images", False

        def __init__(self):
            super().__init__()
            self.logged = {}

        @property
        def tracker(self):
            return self

        def store_init_configuration(self, values):
            pass

        def log(self, values, step=None, **kwargs):
            pass

        def log_images(self, values, step=None, **kwargs):
            self.logged.update({(k, step): v for k, v in values.items()})

    tracker = Images()
    accelerator = Accelerator(log_with=[tracker])
    accelerator.init_trackers("test")
    log_videos(accelerator, clips(), step=7)
    assert sorted(tracker.logged) == [("validation/video_0", 7), ("validation/video_1", 7)]
    assert np.array_equal(tracker.logged["validation/video_1", 7][0], frame_grid(clips()[1]))
    assert frame_grid(clips()[0]).shape == (16, 64, 3)


def test_validation_clips_are_animated_gifs_in_tensorboard(tmp_path):
    pytest.importorskip("tensorboard")
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration
    from PIL import Image
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accelerator = Accelerator(log_with="tensorboard", project_config=ProjectConfiguration(
        project_dir=str(tmp_path), logging_dir=str(tmp_path / "logs")))
    accelerator.init_trackers("run")
    log_videos(accelerator, clips(), step=3)
    accelerator.end_training()
    events = EventAccumulator(str(tmp_path / "logs" / "run"))
    events.Reload()
    (image,) = events.Images("validation/video_0")
    gif = Image.open(io.BytesIO(image.encoded_image_string))
    assert image.step == 3 and gif.format == "GIF" and gif.n_frames == 4 and gif.size == (16, 16)
