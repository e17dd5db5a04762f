"""What every curation stage shares: its declared contract, its config section, and the shell around ``process``.

A stage is a class with a frozen config section (``Config``) and a header that says what it touches::

    class Faces(Stage):
        name = "faces"
        Config = FacesConfig
        reads = ("frames", "faces")                 # fields of stages/fields.py it may read
        writes = ("landmarks", "id_embedding")     # fields it may write
        scores = ("id_min_cos",)                   # scores it adds (a select step applies the thresholds)
        members = ("face.jpg", "arcface.npy")      # shard members it makes

``__init__(cfg)`` receives only that section and loads the models once (per Ray actor). ``process(row)`` gets a
:class:`RowView` that enforces the header: reading or writing an undeclared field raises
:class:`UndeclaredFieldError` (writing a value of the wrong type, :class:`FieldTypeError`), which stops the build
(a programming error), whereas a :class:`StageError` or
``MediaError`` on one row becomes a recorded rejection of that row and the build goes on. Stages only score; the
select steps of ``stages/dataflow.py`` apply thresholds.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
import traceback
from typing import Any, ClassVar

from human_motion.config import ConfigError
from human_motion.media import MediaError
from human_motion.stages.fields import FIELDS, check_value
from human_motion.types import Row

log = logging.getLogger("human_motion")

# Field metadata for settings that change how a build runs but never what it writes (a resumed build may change
# them freely; they stay out of the build's fingerprint).
RUNTIME = {"runtime": True}


def runtime(default: Any) -> Any:
    return dataclasses.field(default=default, metadata=RUNTIME)


@dataclasses.dataclass(frozen=True)
class StageResources:
    """How Ray runs a stage: rows per call, actors in its pool, CPUs and GPUs per actor. A stage with no GPU shares
    one fused actor with its CPU neighbours (``ray.fuse_cpu_stages``), where only ``batch_size`` matters."""

    batch_size: int = runtime(1)
    concurrency: int = runtime(1)
    num_cpus: float = runtime(0.5)
    num_gpus: float = runtime(0.0)

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.concurrency < 1:
            raise ConfigError("batch_size and concurrency must be >= 1")
        if self.num_cpus < 0 or self.num_gpus < 0:
            raise ConfigError("num_cpus and num_gpus must be >= 0")


def output_settings(cfg: Any) -> dict:
    """The fields of a config section that decide what is written (runtime fields left out), as plain data."""
    out = {}
    for f in dataclasses.fields(cfg):
        if f.metadata.get("runtime"):
            continue
        value = getattr(cfg, f.name)
        out[f.name] = output_settings(value) if dataclasses.is_dataclass(value) else value
    return out


class StageError(Exception):
    """An expected failure on one row: ``reason`` goes to rejects.parquet."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class ContractError(RuntimeError):
    """A stage broke its declared contract: a bug in the stage, never a property of a clip, so it stops the build."""


class UndeclaredFieldError(ContractError):
    """A stage touched a field, score or member its header does not declare."""


class FieldTypeError(ContractError):
    """A stage wrote a value of another type than stages/fields.py declares for the field."""


class RowView:
    """One row as a stage sees it: only the fields, scores and members its header declares."""

    __slots__ = ("row", "stage")

    def __init__(self, row: Row, stage: Stage):
        self.row, self.stage = row, stage

    def _check(self, name: str, allowed: tuple[str, ...], verb: str) -> None:
        if name not in allowed:
            raise UndeclaredFieldError(
                f"stage {self.stage.name!r} {verb} field {name!r}, which its header does not declare "
                f"(reads={self.stage.reads}, writes={self.stage.writes}); add it to {type(self.stage).__name__}."
                f"{'reads' if verb == 'reads' else 'writes'}")

    def __getitem__(self, name: str) -> Any:
        self._check(name, self.stage.reads + self.stage.writes, "reads")
        if name == "frames":
            if self.row.frames is None:
                raise UndeclaredFieldError(f"stage {self.stage.name!r} reads 'frames', but no earlier step wrote them")
            return self.row.frames
        try:
            return self.row.record[name]
        except KeyError:
            raise UndeclaredFieldError(f"stage {self.stage.name!r} reads {name!r}, but no earlier step wrote it "
                                       "(check the order of stages/dataflow.py)") from None

    def get(self, name: str, default: Any = None) -> Any:
        """A declared field that an earlier step may have left out (e.g. face boxes of a clip without faces)."""
        self._check(name, self.stage.reads + self.stage.writes, "reads")
        return self.row.frames if name == "frames" else self.row.record.get(name, default)

    def __setitem__(self, name: str, value: Any) -> None:
        self._check(name, self.stage.writes, "writes")
        try:
            check_value(name, value)
        except TypeError as e:
            raise FieldTypeError(f"stage {self.stage.name!r}: {e}") from None
        if name == "frames":
            self.row.frames = value
        else:
            self.row.record[name] = value

    def score(self, name: str, value: float) -> None:
        if name not in self.stage.scores:
            raise UndeclaredFieldError(f"stage {self.stage.name!r} writes score {name!r}, which its header does not "
                                       f"declare (scores={self.stage.scores})")
        self.row.record.setdefault("scores", {})[name] = float(value)

    def member(self, ext: str, data: bytes) -> None:
        if ext not in self.stage.members:
            raise UndeclaredFieldError(f"stage {self.stage.name!r} writes member {ext!r}, which its header does not "
                                       f"declare (members={self.stage.members})")
        self.row.blobs[ext] = bytes(data)

    def backend(self, what: str, text: str) -> None:
        """Provenance: which model or library made a field (kept in the sample's ``backends``)."""
        self.row.record.setdefault("backends", {})[what] = text

    def add_time(self, what: str, seconds: float) -> None:
        self.row.add_time(what, seconds)

    def reject(self, reason: str, detail: str = "") -> None:
        """Reject this row only (decode: one window of a clip whose other windows go on)."""
        self.row.reject(self.stage.name, reason, detail)

    @property
    def clip_id(self) -> str:
        return str(self.row.record.get("clip_id", "?"))

    def split(self, n: int) -> list[RowView]:
        """``n`` rows, one per window of this clip, each with a copy of the fields so far (decode)."""
        out = []
        for _ in range(n):
            record = {k: (dict(v) if isinstance(v, dict) else v) for k, v in self.row.record.items()}
            out.append(RowView(Row(self.row.shard, self.row.clip_index, n, record), self.stage))
        return out


class Stage:
    """Base class of the curation stages (see the module docstring for the header a stage declares)."""

    name: ClassVar[str] = "stage"
    Config: ClassVar[type] = StageResources
    section: ClassVar[str | None] = None  # config section, when not ``name`` (probe reads decode's)
    reads: ClassVar[tuple[str, ...]] = ()
    writes: ClassVar[tuple[str, ...]] = ()
    scores: ClassVar[tuple[str, ...]] = ()
    members: ClassVar[tuple[str, ...]] = ()
    version: ClassVar[int] = 1  # bump when the same config would now write something else (in the fingerprint)
    journal = None  # on Ray actors: told which rows are in flight, so a row that crashes the worker is found

    def __init__(self, cfg):
        if not isinstance(cfg, self.Config):
            raise TypeError(f"{type(self).__name__} takes its {self.config_section()!r} section "
                            f"({self.Config.__name__}), got {type(cfg).__name__}")
        self.cfg = cfg

    @classmethod
    def config_section(cls) -> str:
        return cls.section or cls.name

    @classmethod
    def check_header(cls) -> None:
        unknown = [f for f in cls.reads + cls.writes if f not in FIELDS]
        if unknown:
            raise UndeclaredFieldError(f"stage {cls.name!r} declares unknown field(s) {unknown}; fields are "
                                       "listed in stages/fields.py")

    def process(self, row: RowView) -> list[RowView]:
        """Process one accepted row; return the rows it becomes (usually ``[row]``)."""
        raise NotImplementedError

    def close(self) -> None:
        """Release models that hold native threads (called when a build in this process ends)."""

    # --- the shell: rejections, timing, crash journal ------------------------------------------------------

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
        died) go alone, so that a retry tells the row that crashes from its batch-mates (engine/crashes.py)."""
        if self.journal is None or not rows:
            return [rows] if rows else []
        suspect = self.journal.suspects(rows)
        together = [r for r, s in zip(rows, suspect) if not s]
        return ([together] if together else []) + [[r] for r, s in zip(rows, suspect) if s]

    def process_rows(self, rows: list[Row]) -> list[Row]:
        """Run ``process`` on every accepted row; rejected rows pass through untouched."""
        out: list[Row] = []
        for row in rows:
            if not row.ok:
                out.append(row)
                continue
            start = time.perf_counter()
            with self.in_flight([row]):
                produced = self._process_one(row)
            elapsed = time.perf_counter() - start
            for r in produced:
                r.add_time(self.name, elapsed / max(1, len(produced)))
            out.extend(produced)
        return out

    def _process_one(self, row: Row) -> list[Row]:
        try:
            return [v.row for v in self.process(RowView(row, self))]
        except ContractError:
            raise
        except (StageError, MediaError) as e:
            row.reject(self.name, e.reason, e.detail)
        except Exception as e:  # noqa: BLE001 - the row boundary: record, never crash the build
            log.warning("%s failed on %s: %s", self.name, row.record.get("clip_id"), e)
            row.reject(self.name, f"{self.name}_error", f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=3)}")
        return [row]
