"""Tasks: how the clips to run are handed to the workers, a few at a time or hundreds at a time.

A *task* is consecutive clips of one shard that one worker runs and writes as one part (engine/writer.py). Clips
differ in cost by three orders of magnitude: a clip rejected at probe (not a video, too short) or by the first
select step (low resolution) takes about a millisecond, a real clip of four windows seconds. Handing clips over one
at a time makes the cheap ones cost a round trip to a Ray actor, a journal call and a file each (on a busy machine,
tens of milliseconds); handing them over in large fixed batches leaves one worker with a long tail of expensive
clips while the others wait. So the size of each task follows the measured cost per clip (guided self-scheduling):
``target_s`` of work per task, at least ``min_clips`` (a stage that works on batches gets them), at most
``max_clips``, and never more than a share of what is left, so that the last tasks are small. An estimate can be
wrong (a run of cheap clips, then expensive ones): a worker stops a task once it has run ``budget_s`` and hands the
clips it did not start back (``give_back``); they are the next to go out.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Iterator

Clip = tuple[int, int, str]  # (shard, clip_index, spec JSON)

TARGET_S = 1.0  # seconds of work per task: a round trip (~ms) is then noise, and the tail short
MAX_CLIPS = 512
EMA = 0.3  # weight of the newest task's seconds per clip in the running estimate
BUDGET_S = 2 * TARGET_S  # a worker stops a task after this long (clips not started go back)


class TaskPlanner:
    """Cuts ``clips`` (in manifest order, ``total`` of them) into tasks for ``workers`` workers; thread-safe."""

    def __init__(self, clips: Iterator[Clip], total: int, workers: int, min_clips: int = 1,
                 target_s: float = TARGET_S, max_clips: int = MAX_CLIPS):
        self.clips = iter(clips)
        self.total, self.workers = total, max(1, workers)
        self.min_clips, self.max_clips = max(1, min_clips), max(min_clips, max_clips)
        self.target_s = target_s
        self.handed = 0
        self.seconds_per_clip: float | None = None  # unknown until a task comes back
        self.lock = threading.Lock()
        self.front: deque[Clip] = deque()  # clips given back, out before the rest

    def observe(self, clips: int, seconds: float) -> None:
        """A task of ``clips`` clips took ``seconds`` on its worker."""
        if clips <= 0:
            return
        per = max(seconds, 0.0) / clips
        with self.lock:
            old = self.seconds_per_clip
            self.seconds_per_clip = per if old is None else (1 - EMA) * old + EMA * per

    def size(self) -> int:
        """Clips in the next task."""
        if self.seconds_per_clip is None:
            wanted = self.min_clips
        else:
            wanted = int(self.target_s / max(self.seconds_per_clip, 1e-6))
        left = self.total - self.handed
        share = math.ceil(left / (2 * self.workers))  # the tail: every worker gets some of what is left
        return max(self.min_clips, min(wanted, share, self.max_clips))

    def give_back(self, clips: list[Clip]) -> None:
        """Clips of a task that its worker did not start (it ran out of its budget): they go out next."""
        with self.lock:
            self.front.extendleft(reversed(clips))
            self.handed -= len(clips)

    def _peek(self) -> Clip | None:
        if not self.front:
            nxt = next(self.clips, None)
            if nxt is None:
                return None
            self.front.append(nxt)
        return self.front[0]

    def next_task(self) -> list[Clip] | None:
        """The next task (clips of one shard), or None when every clip has been handed out."""
        with self.lock:
            head = self._peek()
            if head is None:
                return None
            size = self.size()
            task = [self.front.popleft()]
            while len(task) < size and (nxt := self._peek()) is not None and nxt[0] == head[0]:
                task.append(self.front.popleft())
            self.handed += len(task)
            return task

    def __iter__(self) -> Iterator[list[Clip]]:
        while (task := self.next_task()) is not None:
            yield task
