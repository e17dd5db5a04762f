"""The build's console: one progress display, in the stages' own words.

In a terminal, a tqdm bar of clips done with samples, rejections by stage, rate and ETA; otherwise (CI, logs,
``| tee``) a plain line every ``interval_s`` seconds and at the end. Ray's and mediapipe's own logging stay quiet
unless ``-v`` (engine/executors.py, backends/face_models.py).
"""

from __future__ import annotations

import sys
import time
from collections import Counter


def _fmt_time(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f"{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 \
        else f"{seconds // 60:d}:{seconds % 60:02d}"


class Progress:
    def __init__(self, total_clips: int, mode: str = "auto", stream=None, interval_s: float = 10.0):
        self.stream = stream or sys.stderr
        self.total = total_clips
        if mode == "auto":
            mode = "bar" if getattr(self.stream, "isatty", lambda: False)() else "lines"
        self.mode = mode
        self.clips = self.samples = self.rows = 0
        self.first_row_at = self.last_row_at = None  # perf_counter seconds: the steady rate, start-up left out
        self.rejects: Counter = Counter()
        self.started = time.monotonic()
        self.interval_s, self.last_line = interval_s, 0.0
        self.bar = None
        if mode == "bar" and total_clips:
            from tqdm import tqdm

            self.bar = tqdm(total=total_clips, unit="clip", desc="hm build", file=self.stream, dynamic_ncols=True,
                            smoothing=0.1)

    def row(self, ok: bool, stage: str) -> None:
        """One row (a window, or a rejected clip) came back."""
        self.rows += 1
        self.last_row_at = time.perf_counter()
        if self.first_row_at is None:
            self.first_row_at = self.last_row_at
        if ok:
            self.samples += 1
        else:
            self.rejects[stage or "?"] += 1

    def clip(self) -> None:
        """Every row of one clip came back."""
        self.clips += 1
        if self.bar is not None:
            self.bar.set_postfix_str(self._counts(), refresh=False)
            self.bar.update(1)
        elif self.mode == "lines" and time.monotonic() - self.last_line >= self.interval_s:
            self._line()

    def _counts(self) -> str:
        rejects = sum(self.rejects.values())
        by = ", ".join(f"{k} {v}" for k, v in self.rejects.most_common(3))
        return f"samples {self.samples}, rejects {rejects}" + (f" ({by})" if by else "")

    def _line(self) -> None:
        self.last_line = time.monotonic()
        elapsed = self.last_line - self.started
        rate = self.clips / elapsed if elapsed > 0 else 0.0
        eta_text = _fmt_time((self.total - self.clips) / rate) if rate > 0 else "?"
        print(f"hm build: {self.clips}/{self.total} clips, {self._counts()}, {rate:.2f} clips/s, "
              f"elapsed {_fmt_time(elapsed)}, ETA {eta_text}", file=self.stream, flush=True)

    def row_ms(self) -> float | None:
        """Milliseconds of wall time a row took once rows came back (workers' start-up left out), or None."""
        if self.rows < 2:
            return None
        return round(1000 * (self.last_row_at - self.first_row_at) / (self.rows - 1), 3)

    def note(self, text: str) -> None:
        """A message that must not tear the bar (shards written, quarantined clips)."""
        if self.bar is not None:
            self.bar.write(text, file=self.stream)
        elif self.mode != "off":
            print(text, file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.mode == "lines" and self.total:
            self._line()
