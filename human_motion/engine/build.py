"""``hm build``: sources -> input manifest -> skip done shards -> Ray Data stages -> sink.

The input manifest (``_inputs.parquet``) fixes, on the first run, which clip goes to which shard; a later run with
the same configuration reuses it, skips every shard whose ``_stats.json`` exists, and processes the rest. So a
build killed at any point and started again with the same command ends with exactly the samples of an
uninterrupted one.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import pathlib
import platform
import sys
import time
from collections import Counter

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from human_motion import __version__
from human_motion.config import ConfigError, load_config, merge, read_config_file, resolve_config_path, to_dict
from human_motion.engine import crashes
from human_motion.engine.config import BuildConfig, stage_resources
from human_motion.engine.writer import ShardSink, done_shards, finalize, write_atomic
from human_motion.sources import collect_specs, parse_sources_arg
from human_motion.types import ClipSpec, Row, rows_from_batch

log = logging.getLogger("human_motion")

INPUTS = "_inputs.parquet"
FINGERPRINT = "_build.json"


def _stage_classes() -> dict[str, type]:
    from human_motion.stages.caption import Caption
    from human_motion.stages.decode import Decode
    from human_motion.stages.encode import Encode
    from human_motion.stages.faces import Faces
    from human_motion.stages.flow import FlowIntensity
    from human_motion.stages.quality import Quality

    return {"decode": Decode, "quality": Quality, "faces": Faces, "flow": FlowIntensity, "caption": Caption,
            "encode": Encode}


# Keys that change how a build runs but never what it writes: a resumed build may change them freely.
RUNTIME_KEYS = {
    "*": ("batch_size", "concurrency", "num_cpus", "num_gpus", "device"),
    "flow": ("raft_pairs_per_call",),
    "caption": ("request_timeout_s", "max_parallel_requests", "retry_backoff_s"),
    "sink": ("mode",),
}


def fingerprint(cfg: BuildConfig) -> dict:
    """The parts of the config that decide the outputs (resources, devices and Ray settings excluded)."""
    data = to_dict(cfg)
    data.pop("ray", None)
    for section, values in data.items():
        if isinstance(values, dict):
            for k in RUNTIME_KEYS["*"] + RUNTIME_KEYS.get(section, ()):
                values.pop(k, None)
    return data


def initial_record(spec: ClipSpec) -> dict:
    return {"spec": spec.to_json(), "source": spec.source, "clip_id": spec.clip_id, "media_path": spec.path,
            "static": spec.static, "labels": spec.labels, "status": "ok", "window": -1}


def prepare_inputs(cfg: BuildConfig, fs, root: str) -> pa.Table:
    """Create (first run) or reuse (later runs) the input manifest; refuse a folder built with another config."""
    fp_path, inputs_path = f"{root}/{FINGERPRINT}", f"{root}/{INPUTS}"
    fs.makedirs(root, exist_ok=True)
    wanted = fingerprint(cfg)
    if fs.exists(fp_path) and fs.exists(inputs_path):
        have = json.loads(fs.cat(fp_path))
        if have.get("config") != wanted:
            diff = sorted(_diff_keys(have.get("config", {}), wanted))
            raise ConfigError(
                f"{root} holds a build made with a different configuration (differs in: {', '.join(diff[:6])}); "
                "run the same command to resume it, add --overwrite to start again, or choose another --out")
        with fs.open(inputs_path, "rb") as f:
            return pq.read_table(f)
    specs = collect_specs(cfg.sources, pathlib.Path(root))
    if not specs:
        raise ConfigError("the sources yielded no clips; check the source roots (and limits) in the config")
    per = cfg.sink.clips_per_shard
    table = pa.table({
        "shard": [i // per for i in range(len(specs))],
        "clip_index": list(range(len(specs))),
        "source": [s.source for s in specs],
        "clip_id": [s.clip_id for s in specs],
        "spec": [s.to_json() for s in specs],
    })
    buf = pa.BufferOutputStream()
    pq.write_table(table, buf)
    write_atomic(fs, inputs_path, buf.getvalue().to_pybytes())
    write_atomic(fs, fp_path, json.dumps({"config": wanted, "created": time.time()}, indent=1).encode())
    return table


def _diff_keys(a: dict, b: dict, prefix: str = "") -> set[str]:
    out = set()
    for k in set(a) | set(b):
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            out |= _diff_keys(va, vb, f"{prefix}{k}.")
        elif va != vb:
            out.add(f"{prefix}{k}")
    return out


def _clean_output(fs, root: str) -> None:
    for path in fs.glob(f"{root}/*"):
        name = path.rsplit("/", 1)[-1]
        if name[:6].isdigit() or name in (INPUTS, FINGERPRINT, crashes.QUARANTINE, "index.parquet",
                                           "rejects.parquet", "manifest.json", "config.yaml") or name.endswith(".tmp"):
            fs.rm(path, recursive=True)


def _init_ray(cfg: BuildConfig):
    import ray

    if not ray.is_initialized():
        kwargs = dict(include_dashboard=False, log_to_driver=True, configure_logging=True,
                      logging_level=logging.WARNING)
        if cfg.ray.address:
            ray.init(address=cfg.ray.address, **kwargs)
        else:
            # Workers must import human_motion from this checkout even when it is not installed.
            src = str(pathlib.Path(__file__).resolve().parents[2])
            env = {"env_vars": {"PYTHONPATH": os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")])),
                                "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "0"),
                                # mediapipe's C++ logging: warnings about its graphs on every actor start.
                                "GLOG_minloglevel": os.environ.get("GLOG_minloglevel", "2")}}
            ray.init(num_cpus=cfg.ray.num_cpus, runtime_env=env,
                     object_store_memory=(cfg.ray.object_store_memory_mb or 0) * 2**20 or None, **kwargs)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = cfg.ray.progress
    ctx.print_on_execution_start = False
    return ray


MAX_BLOCKS = 4096


def run_stages_ray(cfg: BuildConfig, rows: list[Row], journal: str):
    """Stream rows through the stages on Ray Data; yields finished rows as they arrive. Every stage reports the
    rows it works on to the crash journal actor named ``journal`` (engine/crashes.py)."""
    ray = _init_ray(cfg)
    classes = _stage_classes()
    # One block per clip streams best on small builds; past a few thousand blocks Ray's per-block overhead wins.
    ds = ray.data.from_items([r.to_columns() for r in rows], override_num_blocks=max(1, min(len(rows), MAX_BLOCKS)))
    for name in cfg.stages:
        res = stage_resources(cfg, name)
        ds = ds.map_batches(
            crashes.JournaledStage, fn_constructor_kwargs={"stage_cls": classes[name], "cfg": cfg, "journal": journal},
            batch_size=res.batch_size, batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=res.concurrency), num_cpus=res.num_cpus, num_gpus=res.num_gpus,
            # Ray Data restarts actors and retries their tasks forever by default: a clip that crashes a native
            # library would then loop. Bounded retries turn it into an error (finished shards stay done).
            max_restarts=cfg.ray.max_retries, max_task_retries=cfg.ray.max_retries,
        )
    for batch in ds.iter_batches(batch_size=1, batch_format="numpy", prefetch_batches=0):
        yield from rows_from_batch(batch)


def run_stages_local(cfg: BuildConfig, rows: list[Row]):
    """The same stages in this process, one row at a time (tests and debugging: --set ray.address=local)."""
    stages = [cls(cfg) for name, cls in _stage_classes().items() if name in cfg.stages]
    for row in rows:
        batch = [row]
        for stage in stages:
            batch = stage.process_rows(batch)
        yield from batch


def run_passes(cfg: BuildConfig, fs, root: str, pending: list[Row], sink: ShardSink, n_done: int,
               n_expected: int) -> None:
    """Run the pending rows into the sink. A pass that fails because clips kept crashing their workers records
    those clips in the quarantine and is followed by another over the shards not yet written, with the
    quarantined clips as ``worker_crashed`` rejections; any other failure is raised."""
    quarantine = crashes.read_quarantine(fs, root)
    local = cfg.ray.address == "local"
    while True:
        rows = [r for r in pending if r.shard not in sink.written]
        journal = name = None
        if not local:
            _init_ray(cfg)
            journal, name = crashes.start_journal()
        try:
            runnable = []
            for row in rows:
                entry = quarantine.get(crashes.row_key(row))
                if entry is None:
                    runnable.append(row)
                else:
                    _sink_add(sink, crashes.quarantined_row(row, entry), n_done, n_expected)
            for row in (run_stages_local(cfg, runnable) if local else run_stages_ray(cfg, runnable, name)):
                _sink_add(sink, row, n_done, n_expected)
            return
        except Exception:
            new = {} if journal is None or cfg.ray.max_retries < 1 else crashes.poisoned(journal, quarantine)
            if not new:
                raise
            for key, entry in new.items():
                entry["clip_id"] = _clip_id(rows, key)
                log.warning("hm build: clip %s (%s) crashed its worker %d times in stage %s: quarantined as %s",
                            key, entry["clip_id"], entry["crashes"], entry["stage"], crashes.CRASH_REASON)
            quarantine.update(new)
            write_atomic(fs, f"{root}/{crashes.QUARANTINE}", json.dumps(quarantine, indent=1).encode())
            sink.forget_unwritten()
        finally:
            if journal is not None:
                import ray

                ray.kill(journal)


def _clip_id(rows: list[Row], key: str) -> str:
    return next((r.record.get("clip_id", "?") for r in rows if crashes.row_key(r) == key), "?")


def _sink_add(sink: ShardSink, row: Row, n_done: int, n_expected: int) -> None:
    shard = sink.add(row)
    if shard is not None:
        log.warning("hm build: shard %06d written (%d/%d shards done)", shard, n_done + len(sink.written), n_expected)


def build(cfg: BuildConfig, out: str) -> dict:
    """Run a build into ``out`` (a local path or an fsspec URL); returns the summary."""
    started = time.time()
    fs, root = fsspec.core.url_to_fs(out)
    root = root.rstrip("/")
    if cfg.sink.mode == "overwrite":
        _clean_output(fs, root)
    fs.makedirs(root, exist_ok=True)
    for tmp in fs.glob(f"{root}/*.tmp"):  # leftovers of a killed run; never under a final name
        fs.rm(tmp)
    inputs = prepare_inputs(cfg, fs, root)
    done = done_shards(fs, root)
    expected = Counter(inputs.column("shard").to_pylist())
    pending = [
        Row(shard, idx, 1, initial_record(ClipSpec.from_json(spec)))
        for shard, idx, spec in zip(inputs.column("shard").to_pylist(), inputs.column("clip_index").to_pylist(),
                                    inputs.column("spec").to_pylist())
        if shard not in done
    ]
    todo = {s: n for s, n in expected.items() if s not in done}
    log.warning("hm build: %d clips in %d shards; %d shards done, %d to do", inputs.num_rows, len(expected),
                len(done), len(todo))
    sink = ShardSink(fs, root, todo)
    if pending:
        run_passes(cfg, fs, root, pending, sink, len(done), len(expected))
        if sink.incomplete:
            raise RuntimeError(f"shards {sink.incomplete} did not receive all their clips; run the command again")
    write_atomic(fs, f"{root}/config.yaml", yaml.safe_dump(to_dict(cfg), sort_keys=False).encode())
    run = {"started": started, "seconds": round(time.time() - started, 2), "shards_written": len(sink.written),
           "argv": sys.argv}
    versions = {"human_motion": __version__, "python": platform.python_version()}
    for mod in ("ray", "cv2", "av", "mediapipe", "dlib", "torch", "webdataset", "pyarrow"):
        m = sys.modules.get(mod)
        if m is not None:
            versions[mod] = getattr(m, "__version__", "?")
    return finalize(fs, root, run, {"config": to_dict(cfg), "versions": versions})


def format_summary(summary: dict, seconds: float) -> str:
    lines = [f"clips in: {summary['clips']}   samples out: {summary['samples']}   rejects: {summary['rejects']}   "
             f"shards: {summary['shards']}   wall: {seconds:.1f}s"]
    if summary["samples_by_source"]:
        lines.append("samples by source: " + ", ".join(f"{k} {v}" for k, v in summary["samples_by_source"].items()))
    if summary["rejects_by_reason"]:
        lines.append("rejects by reason: " + ", ".join(f"{k} {v}" for k, v in summary["rejects_by_reason"].items()))
    if summary["stage_seconds"]:
        # "decode.detect" is a part of "decode": shown, but not counted twice in the total.
        total = sum(v for k, v in summary["stage_seconds"].items() if "." not in k) or 1.0
        lines.append("time per stage (worker seconds): " + ", ".join(
            f"{k} {v:.1f}s ({100 * v / total:.0f}%)" for k, v in summary["stage_seconds"].items()))
    return "\n".join(lines)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sources", help="comma-separated sources, NAME or NAME=ROOT (default: demo); "
                                     "e.g. folder=videos/ or celebv-hq,vfhq with roots in --config")
    p.add_argument("--config", help="YAML/TOML config file, or a packaged config name (build, paper)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config key, e.g. --set flow.backend=farneback (repeatable)")
    p.add_argument("--out", required=True, help="output folder (local path or fsspec URL)")
    p.add_argument("--overwrite", action="store_true", help="delete an earlier build in --out and start again")
    p.add_argument("--ray-address", help="join a running Ray cluster ('auto' or host:port); default: in-process")


def load_build_config(args: argparse.Namespace) -> BuildConfig:
    """Config file (or packaged name), then ``--sources`` (which sources run; roots and options still come from
    the file), then ``--set``. With no sources anywhere, the embedded ``demo`` corpus."""
    path = resolve_config_path(args.config)
    data = read_config_file(path) if path is not None else {}
    if args.sources:
        in_file = data.get("sources") or {}
        data["sources"] = {n: merge(in_file.get(n) or {}, v) for n, v in parse_sources_arg(args.sources).items()}
    elif not data.get("sources"):
        data["sources"] = {"demo": {}}
    overrides = list(args.set)
    if args.overwrite:
        overrides.append("sink.mode=overwrite")
    if args.ray_address:
        overrides.append(f"ray.address={args.ray_address}")
    return load_config(BuildConfig, None, overrides, base=data)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    cfg = load_build_config(args)
    started = time.time()
    summary = build(cfg, args.out)
    print(format_summary(summary, time.time() - started))
    print(f"wrote {args.out}/index.parquet, rejects.parquet, manifest.json and {summary['shards']} shard(s)")
    return 0

