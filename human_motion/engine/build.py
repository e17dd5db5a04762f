"""``hm build``: plan -> run the dataflow (workers write parts) -> assemble shards -> gather index and manifest.

The driver (this module) plans and keeps count; it never holds a sample's bytes. See engine/plan.py for the output
folder, the input manifest and resuming, engine/executors.py for running the steps, engine/writer.py for what is
written where, and engine/crashes.py for clips that crash their worker.
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import platform
import sys
import time
from collections import Counter

import fsspec
import yaml

from human_motion import __version__
from human_motion.config import to_dict
from human_motion.engine import crashes
from human_motion.engine.config import BuildConfig
from human_motion.engine.executors import (initial_record, pool_size, run_local, run_ray, run_tasks_local,
                                           start_pool, stop_actors, task_clips)
from human_motion.engine.plan import (OutputLock, Plan, check_output, looks_complete, prepare_inputs,
                                      remove_stale_temporaries)
from human_motion.engine.progress import Progress
from human_motion.engine.ray_session import init_ray
from human_motion.engine.shards import assemble_shard, finalize, read_manifest
from human_motion.engine.storage import is_local, listing, write_atomic
from human_motion.engine.tasks import TaskPlanner
from human_motion.engine.writer import PartWriter
from human_motion.types import Row

log = logging.getLogger("human_motion")


class ShardTracker:
    """Counts finished clips per shard (starting from those whose parts a killed run left complete) and says when
    a shard has all of its clips."""

    def __init__(self, plan: Plan):
        self.expected = {s: plan.expected[s] for s in plan.todo_shards}
        self.clips_done = Counter({s: len(plan.complete.get(s, ())) for s in self.expected})
        self.windows: Counter = Counter()

    def add(self, result: dict) -> tuple[bool, int | None]:
        """(this row finished its clip, the shard it completed or None)."""
        clip = (result["shard"], result["clip_index"])
        self.windows[clip] += 1
        if self.windows[clip] < result["n_windows"]:
            return False, None
        del self.windows[clip]
        self.clips_done[clip[0]] += 1
        return True, clip[0] if self.clips_done[clip[0]] == self.expected[clip[0]] else None


class ShardAssembler:
    """The Ray actor that assembles complete shards from their parts, on a worker (so sample bytes never reach the
    driver). It holds no CPU and starts with the build, so it is warm when the first shard completes; killed half
    way through a shard, it is restarted and the shard assembled again (its files are renamed into place)."""

    def assemble(self, out: str, shard: int, expected: int) -> dict:
        return assemble_shard(out, shard, expected)


class Assembler:
    """Assembles complete shards: on the assembler actor (on Ray), or here with no Ray."""

    def __init__(self, out: str, plan: Plan, actor, progress: Progress):
        self.out, self.plan, self.actor, self.progress = out, plan, actor, progress
        self.pending: dict = {}
        self.written: list[int] = []
        self.total = len(plan.todo_shards)

    def submit(self, shard: int) -> None:
        if self.actor is None:
            self._done(assemble_shard(self.out, shard, self.plan.expected[shard]))
            return
        self.pending[self.actor.assemble.remote(self.out, shard, self.plan.expected[shard])] = shard
        self.poll()

    def poll(self, wait: bool = False) -> None:
        if not self.pending:
            return
        import ray

        ready, _ = ray.wait(list(self.pending), num_returns=len(self.pending) if wait else 1, timeout=None if wait
                            else 0)
        for ref in ready:
            del self.pending[ref]
            self._done(ray.get(ref))

    def _done(self, stats: dict) -> None:
        self.plan.add(stats)
        self.written.append(int(stats["shard"]))
        what = f"{stats['samples']} samples" if stats["samples"] else "no samples: no tar"
        self.progress.note(f"hm build: shard {stats['shard']} written, {what} ({len(self.written)}/{self.total} "
                           "to do)")


def run_passes(cfg: BuildConfig, fs, root: str, out: str, plan: Plan, assembler: Assembler,
               progress: Progress, journal: tuple | None, pool: list | None = None) -> None:
    """Run the pending clips. A pass that fails because clips kept crashing their workers records those clips in
    the quarantine and is followed by another over what is not yet written, with the quarantined clips as
    ``worker_crashed`` rejections; any other failure is raised. ``journal``: (handle, name) of the crash journal
    on Ray, None in this process (where a crash ends the build anyway); ``pool``: the actors of the first pass on
    Ray, started ahead (``executors.start_pool``); later passes start their own."""
    quarantine = crashes.read_quarantine(fs, root)
    handle, name = journal or (None, None)
    writer = PartWriter(out)
    while True:
        tracker = ShardTracker(plan)
        held = [clip for quarantined, clip in plan.pending(quarantine) if quarantined]
        runnable = (clip for quarantined, clip in plan.pending(quarantine) if not quarantined)
        workers = pool_size(cfg) if handle is not None else cfg.ray.in_process_threads()
        planner = TaskPlanner(runnable, plan.count_pending() - len(held), workers, task_clips(cfg))
        try:
            if handle is not None:
                import ray

                ray.get(handle.reset.remote())  # a new pass: crashes of the last one are counted already
            for shard, clip, spec in held:  # a small rejection part, written here
                row = crashes.quarantined_row(Row(shard, clip, 1, initial_record(spec)),
                                              quarantine[crashes.clip_key(shard, clip)])
                for result in writer.write_task([row]):
                    _count(result, tracker, assembler, progress)
            results = run_ray(cfg, planner, out, name, pool) if handle is not None else \
                run_tasks_local(cfg, planner, out)
            pool = None  # stopped when the pass ends, whatever its end
            for result in results:
                _count(result, tracker, assembler, progress)
            return
        except Exception:
            new = {} if handle is None or cfg.ray.max_retries < 1 else crashes.poisoned(handle, quarantine)
            if not new:
                raise
        for key, entry in new.items():
            entry["clip_id"] = plan.clip_id(int(key.split(":")[1]))
            progress.note(f"hm build: clip {key} ({entry['clip_id']}) crashed its worker {entry['crashes']} times "
                          f"in stage {entry['stage']}: quarantined as {crashes.CRASH_REASON}")
        quarantine.update(new)
        write_atomic(fs, f"{root}/{crashes.QUARANTINE}", json.dumps(quarantine, indent=1).encode())
        assembler.poll(wait=True)
        plan.refresh()


def _count(result: dict, tracker: ShardTracker, assembler: Assembler, progress: Progress) -> None:
    progress.row(result["status"] == "ok", result["stage"])
    clip_done, shard = tracker.add(result)
    if clip_done:
        progress.clip()
    if shard is not None:
        assembler.submit(shard)
    elif assembler.pending:
        assembler.poll()


def build(cfg: BuildConfig, out: str, verbose: bool = False, console=None) -> dict:
    """Run a build into ``out`` (a local path or an fsspec URL); returns the summary. Progress goes to
    ``console`` (default: stderr)."""
    console = console or sys.stderr
    started = time.time()
    fs, root = fsspec.core.url_to_fs(out)
    root = root.rstrip("/")
    check_output(fs, root, overwrite=False)  # before anything is written: refuse a folder that is not a build
    fs.makedirs(root, exist_ok=True)
    with OutputLock(fs, root):
        kept = check_output(fs, root, overwrite=cfg.sink.mode == "overwrite")
        if kept:
            log.warning("hm build: kept %d file(s) in %s that are not the build's: %s", len(kept), root,
                        ", ".join(kept[:5]))
        sizes = listing(fs, root)  # the one listing of the folder this run reads
        remove_stale_temporaries(fs, root, sizes)
        previous = read_manifest(fs, root, sizes)
        use_ray = cfg.ray.address != "local" and not looks_complete(sizes, previous)
        journal = actor = pool = None
        with concurrent.futures.ThreadPoolExecutor(1) as planner:
            # Ray starts (seconds), and its actors import and load their models, while the sources are read and
            # the manifest written; ray.init itself must run in the main thread.
            planned = planner.submit(_plan, cfg, fs, root, sizes, previous)
            if use_ray:
                import ray

                init_ray(cfg, verbose)
                name = crashes.journal_name()
                pool = start_pool(cfg, out, name)  # first, so they take the workers Ray started ahead
                journal = crashes.start_journal(name)
                actor = ray.remote(num_cpus=0, max_restarts=3, max_task_retries=3)(ShardAssembler).remote()
            plan, plan_seconds = planned.result()
        to_run = plan.count_pending()
        print(f"hm build: {_plan_line(plan, to_run)}", file=console, flush=True)
        progress = Progress(to_run, cfg.progress, console)
        assembler = Assembler(out, plan, actor, progress)
        try:
            for shard in plan.ready_shards():  # every clip already written by a run that was stopped
                assembler.submit(shard)
            if len(assembler.written) + len(assembler.pending) < len(plan.todo_shards):
                run_passes(cfg, fs, root, out, plan, assembler, progress, journal, pool)
                pool = None
            assembler.poll(wait=True)
        finally:
            progress.close()
            if journal is not None:
                stop_actors([journal[0], actor, *(pool or ())])  # a pool that ran is stopped already
        if is_local(fs):  # what an assembler killed and retried left (an object store gets no temporary names)
            remove_stale_temporaries(fs, root, listing(fs, root))
        if plan.todo_shards:
            missing = plan.todo_shards
            raise RuntimeError(f"shards {missing[:10]} did not receive all their clips; run the command again")
        if "config.yaml" not in sizes or plan.todo_shards or assembler.written:
            write_atomic(fs, f"{root}/config.yaml", yaml.safe_dump(to_dict(cfg), sort_keys=False).encode())
        run_info = {"started": started, "seconds": round(time.time() - started, 2),
                    "plan_seconds": round(plan_seconds, 2), "clips_run": to_run,
                    "rows_back": progress.rows, "row_ms": progress.row_ms(),
                    "shards_written": len(assembler.written), "argv": sys.argv, "complete": True}
        changed = set(assembler.written) | plan.read_back
        return finalize(fs, root, plan.shards, changed, previous, sizes,
                        run_info, {"config": to_dict(cfg), "versions": _versions()})


def _plan(cfg: BuildConfig, fs, root: str, sizes: dict[str, int], previous: dict) -> tuple[Plan, float]:
    """The plan (sources read, manifest written or reused, what is left found) and the seconds it took."""
    start = time.perf_counter()
    plan = Plan(fs, root, prepare_inputs(cfg, fs, root), sizes, previous)
    return plan, time.perf_counter() - start


def _plan_line(plan: Plan, to_run: int) -> str:
    """What the plan found: clips, those the sources rejected (by reason), shards done and to do."""
    line = f"{plan.inputs.num_rows + plan.source_rejects} clips"
    if plan.source_rejects:
        by = ", ".join(f"{k} {v}" for k, v in plan.source_reasons.most_common(3))
        line += f" ({plan.source_rejects} rejected by their source, recorded without running: {by})"
    return (f"{line}; {plan.inputs.num_rows} to build in {len(plan.expected)} shards; {len(plan.done)} shards done, "
            f"{len(plan.todo_shards)} to do ({to_run} clips to run)")


def _versions() -> dict:
    versions = {"human_motion": __version__, "python": platform.python_version()}
    for mod in ("ray", "cv2", "av", "mediapipe", "dlib", "torch", "webdataset", "pyarrow"):
        m = sys.modules.get(mod)
        if m is not None:
            versions[mod] = getattr(m, "__version__", "?")
    return versions


def run_stages_local(cfg: BuildConfig, rows: list[Row]):
    """The steps in this process without writing (tests, debugging, the reference face): yields finished rows."""
    yield from run_local(cfg, rows)
