"""Running the dataflow: in this process (``ray.address: local``) or on Ray, the same steps either way.

Both executors end every row with the part writer on the worker that finished it (engine/writer.py), and yield
to the driver only a small result per row. On Ray, the steps are grouped into operators: consecutive stages that
need no GPU share one actor (``ray.fuse_cpu_stages``), so a clip is decoded, scored and encoded in one process
with no hand-over of frames, and the pool has one actor per CPU; a stage that asks for GPUs gets a pool of its own.
One operator (every stage on the CPU, the default) runs as a plain actor pool; several run on Ray Data, which
streams rows between the pools with its batching and backpressure.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import os
import queue
import threading
import time
import warnings
from collections.abc import Callable, Iterator

import numpy as np

from human_motion.engine import crashes
from human_motion.engine.config import BuildConfig
from human_motion.engine.tasks import BUDGET_S, Clip, TaskPlanner
from human_motion.engine.writer import PartWriter
from human_motion.stages.base import Stage
from human_motion.stages.dataflow import DATAFLOW
from human_motion.stages.select import Select
from human_motion.types import ClipSpec, Row, batch_from_rows, rows_from_batch

log = logging.getLogger("human_motion")

RESULT_KEYS = ("shard", "clip_index", "n_windows", "status", "stage")
MAX_BLOCKS = 4096


def initial_record(spec: ClipSpec | str) -> dict:
    """The fields a row starts with (stages/fields.py INPUT_FIELDS), from a clip spec or its JSON."""
    spec_json = spec.to_json() if isinstance(spec, ClipSpec) else spec
    spec = ClipSpec.from_json(spec_json)
    return {"spec": spec_json, "source": spec.source, "clip_id": spec.clip_id, "media_path": spec.path,
            "static": spec.static, "labels": spec.labels, "status": "ok", "window": -1}


MALLOC_ARENAS = 4  # glibc's arenas (pools of memory threads allocate from) in a build's worker process


@functools.cache
def _glibc():
    """glibc, or None (another C library: nothing to tune)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


def limit_malloc_arenas() -> None:
    """Cap the arenas glibc makes for the threads that start after this (the build's threads, and the decoders',
    ONNX Runtime's and OpenCV's pools): by default each new thread may get an arena of its own, up to 8 per core,
    and each keeps the freed frames of its own clips, so the resident memory of a process that runs the models crept
    up with the clips it ran. 160 real clips in-process: 830 -> 905-940 MB by default, flat at 740-830 MB with 4
    arenas, and no slower (84.0 / 80.8 s against 81.3 / 83.3 s; 2 arenas were 7 % slower)."""
    libc = _glibc()
    if libc is not None:
        libc.mallopt(-8, MALLOC_ARENAS)  # M_ARENA_MAX


def release_freed_memory() -> None:
    """Hand the memory a task freed back to the system (glibc keeps freed blocks in its arenas): 32 -> 128 real
    clips in-process, peak 976 -> 1118 MB without this, 970 -> 1052 MB with it. Under a millisecond a task, of about
    a second of work."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)


class StepRunner:
    """A run of consecutive steps, built once per worker. ``run_task`` runs a task of clips (engine/tasks.py) and
    writes it as one part; ``__call__`` takes a Ray Data batch of rows and returns the rows after the steps, or
    (with ``out``) the results of writing each as a part."""

    def __init__(self, steps: list[type[Stage]], sections: list, journal: str | None = None, out: str | None = None):
        self.stages = [step(section) for step, section in zip(steps, sections)]
        self.journal = crashes.JournalClient(journal) if journal else None
        for stage in self.stages:
            if self.journal and not isinstance(stage, Select):  # select steps only compare numbers
                stage.journal = self.journal
        self.writer = PartWriter(out) if out else None
        self.chunk = max([getattr(s.cfg, "batch_size", 1) for s in self.stages] + [1])

    def run(self, rows: list[Row]) -> list[Row]:
        for stage in self.stages:
            rows = stage.process_rows(rows)
        return rows

    def run_task(self, task: list[Clip], budget_s: float = BUDGET_S) -> dict:
        """Run the clips of ``task`` (``chunk`` at a time, the largest batch a stage asks for) until done or past
        ``budget_s``, and write what ran as one part. Returns the write results, the clips not started (for the
        driver to hand out again), and the seconds taken (to size the next tasks)."""
        start = time.perf_counter()
        rows = [Row(shard, clip, 1, initial_record(spec)) for shard, clip, spec in task]
        done: list[Row] = []
        ran = 0
        if self.journal:
            self.journal.start_task(rows)
        try:
            while ran < len(rows) and (ran == 0 or time.perf_counter() - start < budget_s):
                done += self.run(rows[ran:ran + self.chunk])
                ran += len(rows[ran:ran + self.chunk])
        finally:
            if self.journal:
                self.journal.end_task()
        results = self.writer.write_task(done) if done else []
        del rows, done
        release_freed_memory()
        return {"results": [tuple(r[k] for k in RESULT_KEYS) for r in results], "left": task[ran:],
                "clips": ran, "seconds": time.perf_counter() - start}

    def __call__(self, batch: dict) -> dict:
        rows = self.run(rows_from_batch(batch))
        if self.writer is None:
            return batch_from_rows(rows)
        results = [self.writer(r) for r in rows]
        return {k: np.asarray([r[k] for r in results], dtype=object if k in ("status", "stage") else np.int64)
                for k in RESULT_KEYS}

    def close(self) -> None:
        for stage in self.stages:
            stage.close()


class RayStepRunner(StepRunner):
    """What a Ray actor builds: the steps by their place in the dataflow and the config as plain data, so the
    actor's constructor arguments stay a few kilobytes (models load in the actor, never travel)."""

    def __init__(self, config: dict, step_ids: list[int], journal: str | None, out: str | None, threads: int = 1):
        import cv2

        from human_motion.config import load_config

        # The actor's CPU share: OpenCV's own threads would oversubscribe the cores its neighbours hold. (In this
        # process, with no neighbours, OpenCV keeps its default: every core.)
        cv2.setNumThreads(threads)
        limit_malloc_arenas()
        cfg = load_config(BuildConfig, None, [], base=config)
        steps = [DATAFLOW[i] for i in step_ids]
        super().__init__(steps, [cfg.section(s) for s in steps], journal, out)

    def run_batch(self, task: list[Clip], budget_s: float = BUDGET_S) -> dict:
        """The actor method of the plain pool: one task (Ray Data calls the instance itself, with rows); the answer
        also says the actor's nice value (a Ray started elsewhere may run its workers at Ray's default, 15)."""
        return {**self.run_task(task, budget_s), "nice": os.nice(0)}


def run_local(cfg: BuildConfig, rows: list[Row]) -> Iterator[Row]:
    """The steps in this process on ``rows``, without writing (tests, debugging, the reference face): yields the
    finished rows, ``ray.local_threads`` clips at a time (see ``run_tasks_local``)."""
    pending: queue.SimpleQueue = queue.SimpleQueue()
    for row in rows:
        pending.put(row)

    def take() -> Row | None:
        try:
            return pending.get_nowait()
        except queue.Empty:
            return None

    threads = max(1, min(cfg.ray.in_process_threads(), len(rows)))
    yield from _run_threads(cfg, None, threads, take, lambda runner, row: runner.run([row]))


def run_tasks_local(cfg: BuildConfig, planner: TaskPlanner, out: str) -> Iterator[dict]:
    """The build in this process: ``ray.local_threads`` threads take tasks from ``planner``, each with a
    ``StepRunner`` of its own (no model is shared between threads; the decoders and models release the GIL, so two
    threads are ~1.3x faster on 2 cores), and write each task as a part. Yields one result per row, in the order
    tasks finish, as on Ray; the samples do not depend on which thread ran a clip."""

    def work(runner: StepRunner, task: list[Clip]) -> list[dict]:
        return _task_done(planner, runner.run_task(task))

    threads = max(1, min(cfg.ray.in_process_threads(), planner.total))
    yield from _run_threads(cfg, out, threads, planner.next_task, work)


def _task_done(planner: TaskPlanner, answer: dict) -> list[dict]:
    """What a worker's ``run_task`` answered: the planner learns its cost and gets back the clips it left."""
    planner.observe(answer["clips"], answer["seconds"])
    if answer["left"]:
        planner.give_back(answer["left"])
    return [dict(zip(RESULT_KEYS, r)) for r in answer["results"]]


def _local_runner(cfg: BuildConfig, out: str | None) -> StepRunner:
    steps = cfg.steps()
    return StepRunner(steps, [cfg.section(s) for s in steps], out=out)


def _run_threads(cfg: BuildConfig, out: str | None, threads: int, take: Callable, work: Callable) -> Iterator:
    """``threads`` threads, each with its own ``StepRunner``, doing ``work(runner, item)`` on the items ``take()``
    gives until it gives None. With one thread, in this thread (a stop after N results leaves nothing running
    ahead of the consumer). An error in one thread stops the others after their current item and is raised here;
    so is a stop of this generator (Ctrl-C), which waits for them."""
    limit_malloc_arenas()
    if threads == 1:
        runner = _local_runner(cfg, out)
        try:
            while (item := take()) is not None:
                yield from work(runner, item)
        finally:
            runner.close()
        return
    done: queue.SimpleQueue = queue.SimpleQueue()
    stop = threading.Event()

    def loop() -> None:
        runner = None
        try:
            runner = _local_runner(cfg, out)
            while not stop.is_set() and (item := take()) is not None:
                done.put(("items", work(runner, item)))
        except BaseException as e:  # noqa: BLE001 - handed to the generator, which raises it
            done.put(("error", e))
        finally:
            if runner is not None:
                runner.close()
            done.put(("exit", None))

    workers = [threading.Thread(target=loop, name=f"hm-build-{i}", daemon=True) for i in range(threads)]
    for w in workers:
        w.start()
    try:
        running = threads
        while running:
            kind, value = done.get()
            if kind == "exit":
                running -= 1
            elif kind == "error":
                raise value
            else:
                yield from value
    finally:
        stop.set()
        for w in workers:
            w.join()


def operators(cfg: BuildConfig, steps: list[type[Stage]]) -> list[tuple[list[type[Stage]], dict]]:
    """Group steps into Ray operators: (steps, map_batches resources). Select steps join the operator before them;
    with ``ray.fuse_cpu_stages`` consecutive stages without GPUs share one."""
    groups: list[tuple[list[type[Stage]], object]] = []
    for step in steps:
        section = cfg.section(step)
        gpu = getattr(section, "num_gpus", 0) > 0
        fusable = not gpu and cfg.ray.fuse_cpu_stages
        if groups and (issubclass(step, Select) or (fusable and groups[-1][1] == "cpu")):
            groups[-1][0].append(step)
        else:
            groups.append(([step], "cpu" if fusable else section))
    out = []
    cpus = _cluster_cpus()
    for group_steps, kind in groups:
        if kind == "cpu":
            reserved = sum(k.num_cpus * k.concurrency for _, k in groups if k != "cpu")
            size = cfg.ray.cpu_actors or max(1, int(cpus - reserved))
            batch = max(getattr(cfg.section(s), "batch_size", 1) for s in group_steps)
            out.append((group_steps, {"batch_size": batch, "concurrency": size, "num_cpus": 1.0, "num_gpus": 0.0}))
        else:
            out.append((group_steps, {"batch_size": kind.batch_size, "concurrency": kind.concurrency,
                                      "num_cpus": kind.num_cpus, "num_gpus": kind.num_gpus}))
    return out


def _cluster_cpus() -> float:
    import ray

    return float(ray.cluster_resources().get("CPU", 1))


def run_ray(cfg: BuildConfig, planner: TaskPlanner, out: str, journal: str, pool: list | None = None
            ) -> Iterator[dict]:
    """Run the planner's clips through the steps on Ray; yields one write result per finished row. When every step
    runs in one fused CPU actor (the default without GPUs), a plain pool of those actors (``pool``, from
    ``start_pool``, or new ones) takes tasks; with GPU stages, Ray Data operators stream rows. The crash journal
    actor named ``journal`` is told which clips are in flight (engine/crashes.py). The pool's actors are stopped
    when the clips are done."""
    from human_motion.config import to_dict

    groups = operators(cfg, cfg.steps())
    if len(groups) == 1:
        yield from run_actor_pool(pool or _pool_actors(cfg, groups[0], out, journal), planner, cfg.ray.worker_niceness)
    else:
        rows = [Row(shard, clip, 1, initial_record(spec)) for task in planner for shard, clip, spec in task]
        yield from run_ray_data(to_dict(cfg), groups, rows, out, journal, cfg.ray.max_retries, cfg.ray.progress)


def task_clips(cfg: BuildConfig) -> int:
    """The fewest clips in a task: the largest batch a stage of the build asks for."""
    return max([getattr(cfg.section(s), "batch_size", 1) for s in cfg.steps()] + [1])


def pool_size(cfg: BuildConfig) -> int:
    """Workers that take tasks: the fused pool's actors on Ray."""
    groups = operators(cfg, cfg.steps())
    return groups[0][1]["concurrency"] if len(groups) == 1 else 1


def start_pool(cfg: BuildConfig, out: str, journal: str) -> list | None:
    """The plain pool's actors, started now so that they import and load their models while the driver does other
    work (reading the sources, starting the journal and the assembler); None when the steps need Ray Data."""
    groups = operators(cfg, cfg.steps())
    return _pool_actors(cfg, groups[0], out, journal) if len(groups) == 1 else None


def stop_actors(actors: list | None) -> None:
    """Kill ``actors`` (a pool, or the journal and assembler at the end of a build); a dead one is no error."""
    import ray

    for a in actors or ():
        ray.kill(a)


def _runner_class(group: list[type[Stage]]) -> type:
    name = "+".join(dict.fromkeys(s.name for s in group if not issubclass(s, Select)))
    return type(name or "select", (RayStepRunner,), {})  # Ray names the actors after the class


def _pool_actors(cfg: BuildConfig, group: tuple, out: str, journal: str) -> list:
    """The ``concurrency`` actors of one operator (``group``: its steps and resources), started at once."""
    import ray

    from human_motion.config import to_dict

    steps, res = group
    kwargs = {"config": to_dict(cfg), "step_ids": [DATAFLOW.index(s) for s in steps], "journal": journal,
              "out": out, "threads": max(1, int(res["num_cpus"]))}
    retries = cfg.ray.max_retries
    actor = ray.remote(num_cpus=res["num_cpus"], num_gpus=res["num_gpus"], max_restarts=retries,
                       max_task_retries=retries)(_runner_class(steps))
    return [actor.remote(**kwargs) for _ in range(res["concurrency"])]


def run_actor_pool(pool: list, planner: TaskPlanner, niceness: int = 0) -> Iterator[dict]:
    """One operator on ``pool``: each actor is sent a task at a time, at most two in flight (clips differ in cost,
    and a deep queue leaves one actor with the long tail; engine/tasks.py sizes the tasks). Ray Data's own actors
    (statistics, autoscaling, locations) would each cost a worker process, seconds on a small machine. Warns once
    when the actors run at a nice value above ``niceness`` (``ray.worker_niceness``)."""
    import ray

    in_flight: dict = {}
    load = [0] * len(pool)
    warned = False
    try:
        while True:
            for i, a in enumerate(pool):
                while load[i] < 2 and (task := planner.next_task()) is not None:
                    in_flight[a.run_batch.remote(task)] = i
                    load[i] += 1
            if not in_flight:
                return
            ready, _ = ray.wait(list(in_flight), num_returns=1)
            for ref in ready:
                load[in_flight.pop(ref)] -= 1
                answer = ray.get(ref)
                if answer.get("nice", 0) > niceness and not warned:
                    warned = True
                    log.warning("hm build: Ray runs this build's workers at nice %d (the joined Ray was started with "
                                "it; Ray's default is 15): beside other CPU-bound work they get a small share of "
                                "the CPU; start Ray with `RAY_worker_niceness=0 ray start ...`", answer["nice"])
                yield from _task_done(planner, answer)
    finally:
        stop_actors(pool)


def _results(batch: dict) -> Iterator[dict]:
    for i in range(len(batch["shard"])):
        yield {k: (batch[k][i].item() if hasattr(batch[k][i], "item") else batch[k][i]) for k in RESULT_KEYS}


def run_ray_data(config: dict, groups: list, rows: list[Row], out: str, journal: str,
                 retries: int, progress: bool = False) -> Iterator[dict]:
    """Several operators (GPU stages with pools of their own): Ray Data streams rows between them, with its
    batching and backpressure. (Ray Data is imported here only: half a second a build without GPU stages saves.)"""
    import ray
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = progress
    ctx.print_on_execution_start = False

    # One block per clip streams best on small builds; past a few thousand blocks Ray's per-block overhead wins.
    ds = ray.data.from_items([r.to_columns() for r in rows], override_num_blocks=max(1, min(len(rows), MAX_BLOCKS)))
    for i, (group, res) in enumerate(groups):
        kwargs = {"config": config, "step_ids": [DATAFLOW.index(s) for s in group], "journal": journal,
                  "out": out if i == len(groups) - 1 else None, "threads": max(1, int(res["num_cpus"]))}
        with warnings.catch_warnings():
            # Ray 2.60 deprecates pass-through remote arguments but has no named parameter for these two yet.
            warnings.filterwarnings("ignore", message=".*ray_remote_args.*deprecated")
            ds = ds.map_batches(
                _runner_class(group), fn_constructor_kwargs=kwargs, batch_size=res["batch_size"],
                batch_format="numpy", num_cpus=res["num_cpus"], num_gpus=res["num_gpus"],
                compute=ray.data.ActorPoolStrategy(size=res["concurrency"], max_tasks_in_flight_per_actor=2),
                # Ray Data restarts actors and retries their tasks forever by default: a clip that crashes a native
                # library would then loop. Bounded retries turn it into an error (finished shards stay done).
                max_restarts=retries, max_task_retries=retries,
            )
    for batch in ds.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=0):
        yield from _results(batch)


