"""Clips that kill their worker: found, recorded as rejections, and the build goes on without them.

A Python error on one row is caught by ``Stage.process_rows`` and becomes a rejection. A crash inside a native
library (a segfault in a decoder or a model runtime, an abort, the OOM killer) takes the whole Ray actor with it,
and there is nothing left to catch it. Ray restarts the actor and retries its task ``ray.max_retries`` times, then
the build fails. To know which clip did it, every stage on a Ray actor tells a small journal actor which rows it
is working on (``begin``) and which it finished (``end``). A clip that was begun and never finished at least twice
(it crashed its worker, was retried, and crashed it again) is *poisoned*: the build records it in
``<out>/_quarantine.json``, reruns the shards that were not finished, and writes the clip into its shard's
rejects as ``worker_crashed`` (stage: where it crashed). Rows that were merely in flight on other actors when the
pipeline was torn down were begun once, not twice, and are simply processed again.

A stage that works on several rows at once (captioning with a multimodal model: one ``generate`` call per batch)
marks them all in flight, so a crash there counts against every clip of the batch. On the retry the stage runs
the rows that were in flight when a worker died one at a time (``Stage.in_flight_batches``): only the clip that
crashes again reaches ``MIN_CRASHES``, and its batch-mates are built normally in the next pass.

To keep cheap rows cheap, a worker does not tell the journal about every row and stage: it begins a whole task
(the clips it was handed, engine/tasks.py) in one call that also says which of them are suspects, and ends it in
one call. Only suspects (clips begun and never finished before) are then journaled stage by stage, so the crash
that makes a clip poisoned is always recorded with its stage.

With ``ray.max_retries: 0`` a crash is never retried, so no clip can be told apart from its bystanders: the build
stops at the first crash, as it always did. Builds with ``ray.address: local`` run in one process, which a crash
ends; the quarantine written by an earlier Ray run is still honoured there.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections import Counter

from human_motion.types import Row

QUARANTINE = "_quarantine.json"
CRASH_REASON = "worker_crashed"
MIN_CRASHES = 2  # begun and never finished this many times in one pass: the clip, not a bystander


def clip_key(shard: int, clip_index: int) -> str:
    """One clip of the input manifest (all of its windows)."""
    return f"{shard}:{clip_index}"


def row_key(row: Row) -> str:
    return clip_key(row.shard, row.clip_index)


class CrashJournal:
    """Which clips each stage began and finished, in one pass of a build (a Ray actor whose methods may run in
    several threads: every update holds the lock)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """A new pass: nothing begun yet."""
        self.begun: Counter = Counter()
        self.ended: Counter = Counter()
        self.stage: dict[str, str] = {}

    # One call is one attempt at each clip it names, however many of the clip's windows it holds: a batch with
    # three windows of a clip that dies once is one crash of that clip, not three.
    def begin(self, keys: list[str], stage: str) -> None:
        with self.lock:
            self.begun.update(set(keys))
            for k in keys:
                self.stage[k] = stage

    def end(self, keys: list[str]) -> None:
        with self.lock:
            self.ended.update(set(keys))

    def start(self, keys: list[str], stage: str) -> list[bool]:
        """A worker takes a task: returns which clips are suspects (``suspects``), and begins the others."""
        with self.lock:
            flags = [self.begun[k] > self.ended[k] for k in keys]
            fresh = {k for k, f in zip(keys, flags) if not f}
            self.begun.update(fresh)
            for k in fresh:
                self.stage[k] = stage
            return flags

    def suspects(self, keys: list[str]) -> list[bool]:
        """For each key: was it begun before and never finished (its worker died while it was in flight)?"""
        with self.lock:
            return [self.begun[k] > self.ended[k] for k in keys]

    def unfinished(self) -> dict[str, dict]:
        """``{key: {"stage": ..., "crashes": n}}`` for every clip begun more often than finished."""
        with self.lock:
            return {k: {"stage": self.stage[k], "crashes": n - self.ended[k]}
                    for k, n in self.begun.items() if n > self.ended[k]}


def journal_name() -> str:
    return f"hm-crash-journal-{uuid.uuid4().hex[:12]}"


def start_journal(name: str):
    """The journal actor of a build (one pass after another: ``reset`` between them); returns (handle, name) at
    once. Its methods run in threads, so many workers' begin/end calls are answered at once."""
    import ray

    handle = ray.remote(num_cpus=0, max_restarts=0, max_concurrency=8)(CrashJournal).options(name=name).remote()
    return handle, name


class JournalClient:
    """What a stage on a Ray actor holds: blocking calls, so a crash right after ``begin`` cannot lose it. The
    journal is looked up by name at the first call, so the stages' actors may start before it.

    Between ``start_task`` and ``end_task`` the clips of the task that are not suspects are *covered*: the stages'
    ``begin``/``end`` for them cost no call, and ``suspects`` is answered here."""

    def __init__(self, name: str):
        import ray

        self._ray = ray
        self._name = name
        self._handle = None
        self.covered: set[str] = set()
        self.suspect: set[str] | None = None  # the task's suspects; None outside a task

    def start_task(self, rows: list[Row]) -> None:
        keys = [row_key(r) for r in rows]
        flags = self._ray.get(self._actor.start.remote(keys, "task"))
        self.covered = {k for k, f in zip(keys, flags) if not f}
        self.suspect = {k for k, f in zip(keys, flags) if f}

    def end_task(self) -> None:
        if self.covered:
            self._ray.get(self._actor.end.remote(sorted(self.covered)))
        self.covered, self.suspect = set(), None

    def _uncovered(self, rows: list[Row]) -> list[str]:
        return [k for k in (row_key(r) for r in rows) if k not in self.covered]

    @property
    def _actor(self):
        if self._handle is None:
            self._handle = self._ray.get_actor(self._name)
        return self._handle

    def begin(self, rows: list[Row], stage: str) -> None:
        keys = self._uncovered(rows)
        if keys:
            self._ray.get(self._actor.begin.remote(keys, stage))

    def end(self, rows: list[Row]) -> None:
        keys = self._uncovered(rows)
        if keys:
            self._ray.get(self._actor.end.remote(keys))

    def suspects(self, rows: list[Row]) -> list[bool]:
        if self.suspect is not None:
            return [row_key(r) in self.suspect for r in rows]
        return self._ray.get(self._actor.suspects.remote([row_key(r) for r in rows]))


def poisoned(journal, known: dict[str, dict]) -> dict[str, dict]:
    """Clips the failed pass shows crashing their worker at least ``MIN_CRASHES`` times, not already known."""
    import ray

    return {k: v for k, v in ray.get(journal.unfinished.remote()).items()
            if v["crashes"] >= MIN_CRASHES and k not in known}


def read_quarantine(fs, root: str) -> dict[str, dict]:
    path = f"{root}/{QUARANTINE}"
    if not fs.exists(path):
        return {}
    data = json.loads(fs.cat_file(path))
    if not isinstance(data, dict) or not all(isinstance(v, dict) and "stage" in v for v in data.values()):
        raise ValueError(f"{path} is not a quarantine file written by hm build; delete it to start over")
    return data


def quarantined_row(row: Row, entry: dict) -> Row:
    """The clip's one rejection row (whatever windows it would have made)."""
    quarantined = Row(row.shard, row.clip_index, 1, dict(row.record))
    quarantined.reject(entry["stage"], CRASH_REASON,
                       f"killed its worker {entry['crashes']} times in stage {entry['stage']} (a native crash: "
                       f"segfault, abort or out of memory; the Ray worker logs say which); see {QUARANTINE}")
    return quarantined
