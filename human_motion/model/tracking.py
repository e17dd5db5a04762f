"""What a training run tells the person watching it: ``logs/train.jsonl``, an experiment tracker through accelerate,
and per-step progress on the console.

- ``train.log_with``: ``auto`` (TensorBoard when the ``tensorboard`` package is installed, else none), ``none``, or
  any tracker accelerate supports (``tensorboard``, ``wandb``, ``mlflow``, ``comet_ml``, ``aim``, ``clearml``,
  ``dvclive``, ``swanlab``, ``trackio``; several comma-separated, or ``all``). Scalars go through
  ``accelerator.log``; validation clips through :func:`log_videos`.
- Progress: a tqdm bar (loss, steps/s, ETA) when stderr is a terminal; otherwise a plain line every
  ``train.progress_every_s`` seconds (logs of batch jobs stay readable, no carriage returns).
"""

from __future__ import annotations

import io
import json
import math
import pathlib
import sys
import time

import numpy as np

from human_motion.config import ConfigError

PROJECT = "human-motion"  # accelerate's project name: TensorBoard writes to RUN/logs/human-motion/


def resolve_trackers(log_with: str) -> list[str]:
    """``train.log_with`` -> tracker names for ``Accelerator(log_with=...)``; refuses one that is not installed
    (accelerate would drop it silently)."""
    from accelerate.tracking import LOGGER_TYPE_TO_CLASS, get_available_trackers

    available = [str(getattr(t, "value", t)) for t in get_available_trackers()]
    value = (log_with or "none").strip()
    if value == "none":
        return []
    if value == "auto":
        return ["tensorboard"] if "tensorboard" in available else []
    if value == "all":
        return available
    names = [n.strip() for n in value.split(",") if n.strip()]
    for name in names:
        if name not in LOGGER_TYPE_TO_CLASS:
            raise ConfigError(f"train.log_with: unknown tracker {name!r}; choose auto, none, all or any of "
                              f"{', '.join(sorted(LOGGER_TYPE_TO_CLASS))}")
        if name not in available:
            raise ConfigError(f"train.log_with={name} but the {name} package is not installed: pip install {name}, "
                              "or --set train.log_with=none")
    return names


def flat_config(cfg: dict, prefix: str = "") -> dict:
    """Nested config -> ``{"section.key": scalar}``, the hyperparameter form every tracker takes."""
    out = {}
    for k, v in cfg.items():
        if isinstance(v, dict):
            out.update(flat_config(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v if isinstance(v, (int, float, str, bool)) else str(v)
    return out


class RunLog:
    """Appends records to ``logs/train.jsonl`` and sends their numbers to the trackers (main process only)."""

    def __init__(self, accelerator, path: pathlib.Path, resume_step: int):
        self.accelerator, self.path = accelerator, path
        if accelerator.is_main_process:  # drop lines of a killed run past the checkpoint we resume from
            lines = path.read_text().splitlines() if path.exists() else []
            path.write_text("".join(f"{line}\n" for line in lines if json.loads(line)["step"] <= resume_step))

    def __call__(self, record: dict) -> None:
        if not self.accelerator.is_main_process:
            return
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        numbers = {k: v for k, v in record.items() if k != "step" and isinstance(v, (int, float))
                   and not isinstance(v, bool) and math.isfinite(v)}
        if numbers and self.accelerator.trackers:
            self.accelerator.log(numbers, step=record["step"])


def gif_bytes(frames: np.ndarray, fps: float) -> bytes:
    """(f, H, W, 3) uint8 -> an animated GIF, looping."""
    from PIL import Image

    buf = io.BytesIO()
    images = [Image.fromarray(f) for f in frames]
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
    return buf.getvalue()


def frame_grid(frames: np.ndarray) -> np.ndarray:
    """(f, H, W, 3) -> one image (H, f * W, 3): the clip's frames side by side."""
    return np.concatenate(list(frames), axis=1)


def log_videos(accelerator, clips: np.ndarray, step: int, fps: float = 4.0) -> None:
    """Validation clips (n, f, H, W, 3) uint8 to every tracker that takes media.

    TensorBoard: an animated GIF per clip in the Images tab. ``SummaryWriter.add_video`` would do the same but
    encodes the GIF with ``moviepy.editor``, which moviepy 2 removed (torch then prints a notice and logs
    nothing), so the GIF is encoded here with PIL and written as the image summary ``add_video`` would write.
    Other trackers with ``log_images`` (wandb, mlflow, aim, ...): the frames of each clip side by side.
    """
    if not accelerator.is_main_process:
        return
    for tracker in accelerator.trackers:
        if tracker.name == "tensorboard":
            from tensorboard.compat.proto.summary_pb2 import Summary

            writer = tracker.tracker
            for i, clip in enumerate(clips):
                image = Summary.Image(height=clip.shape[1], width=clip.shape[2], colorspace=3,
                                      encoded_image_string=gif_bytes(clip, fps))
                summary = Summary(value=[Summary.Value(tag=f"validation/video_{i}", image=image)])
                writer._get_file_writer().add_summary(summary, step)  # what add_video does after encoding
            writer.flush()
        elif hasattr(tracker, "log_images"):
            tracker.log_images({f"validation/video_{i}": [frame_grid(clip)] for i, clip in enumerate(clips)},
                               step=step)


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    h, m, s = seconds // 3600, seconds // 60 % 60, seconds % 60
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


class Progress:
    """Steps done out of ``total``, with the latest loss: a tqdm bar on a terminal, plain lines otherwise."""

    def __init__(self, total: int, initial: int, enabled: bool, every_s: float = 30.0, stream=None):
        self.stream = stream or sys.stderr
        self.total, self.initial, self.every_s = total, initial, every_s
        self.enabled = enabled
        self.bar = None
        self.start = self.last_line = time.monotonic()
        if enabled and getattr(self.stream, "isatty", lambda: False)():
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=initial, unit="step", desc="hm train", file=self.stream,
                            dynamic_ncols=True)

    def update(self, step: int, loss: float, lr: float) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(step - self.bar.n)
            self.bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", refresh=False)
            return
        now = time.monotonic()
        if step not in (self.initial + 1, self.total) and now - self.last_line < self.every_s:
            return
        self.last_line = now
        rate = (step - self.initial) / max(now - self.start, 1e-9)
        eta = (self.total - step) / rate if rate > 0 else math.inf
        print(f"hm train: step {step}/{self.total} ({100 * step / self.total:.0f}%) loss {loss:.4f} lr {lr:.2e} "
              f"{rate:.2f} steps/s ETA {_duration(eta)}", file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
