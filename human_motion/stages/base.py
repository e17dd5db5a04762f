"""What every curation stage shares: batch <-> rows, skipping rejected rows, timing, and turning an error on one
row into a recorded rejection (the one place a broad ``except`` lives, so one bad clip never stops a build).

A stage is a class built once per Ray actor (``__init__`` loads its models) and called on batches; it can also be
called on a plain list of rows (``process_rows``), so tests run stages without Ray.
"""

from __future__ import annotations

import contextlib
import logging
import time
import traceback
from typing import Any

from human_motion.media import MediaError
from human_motion.engine.config import BuildConfig
from human_motion.types import Row, batch_from_rows, rows_from_batch

log = logging.getLogger("human_motion")


class StageError(Exception):
    """An expected failure on one row: ``reason`` goes to rejects.parquet."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class Stage:
    name = "stage"
    journal = None  # on Ray actors: told which rows are in flight, so a row that crashes the worker is found

    @contextlib.contextmanager
    def in_flight(self, rows: list[Row]):
        """Mark ``rows`` as being worked on until the block ends (engine/crashes.py)."""
        if self.journal is None or not rows:
            yield
            return
        self.journal.begin(rows, self.name)
        try:
            yield
        finally:  # a Python error finishes the row too (as a rejection); only a dead process never gets here
            self.journal.end(rows)

    def in_flight_batches(self, rows: list[Row]) -> list[list[Row]]:
        """How a stage that works on rows together should group them, each group under its own ``in_flight``:
        one group, except that rows of a clip begun and not finished (in flight when an earlier attempt's worker
        died; or, harmlessly, still in flight on another actor) go alone, so that a retry tells the row that
        crashes from its batch-mates (engine/crashes.py)."""
        if self.journal is None or not rows:
            return [rows] if rows else []
        suspect = self.journal.suspects(rows)
        together = [r for r, s in zip(rows, suspect) if not s]
        return ([together] if together else []) + [[r] for r, s in zip(rows, suspect) if s]

    def __init__(self, cfg: BuildConfig):
        self.cfg = cfg
        import cv2

        cv2.setNumThreads(1)  # Ray runs one actor per core share; OpenCV's own threads would oversubscribe

    def process(self, row: Row) -> list[Row]:
        """Process one accepted row; return the rows it becomes (usually [row])."""
        raise NotImplementedError

    def process_rows(self, rows: list[Row]) -> list[Row]:
        out: list[Row] = []
        for row in rows:
            if not row.ok:
                out.append(row)
                continue
            start = time.perf_counter()
            try:
                with self.in_flight([row]):
                    produced = self.process(row)
            except (StageError, MediaError) as e:
                row.reject(self.name, e.reason, e.detail)
                produced = [row]
            except Exception as e:  # noqa: BLE001 - the row boundary: record, never crash the build
                log.warning("%s failed on %s: %s", self.name, row.record.get("clip_id"), e)
                row.reject(self.name, f"{self.name}_error", f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=3)}")
                produced = [row]
            elapsed = time.perf_counter() - start
            for r in produced:
                r.add_time(self.name, elapsed / max(1, len(produced)))
            out.extend(produced)
        return out

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        return batch_from_rows(self.process_rows(rows_from_batch(batch)))
