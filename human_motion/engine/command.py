"""The ``hm build`` command: parse, load the config, run the build, print the summary; every refusal one line."""

from __future__ import annotations

import argparse
import errno
import logging
import os
import sys
import time

from human_motion.config import (ConfigError, load_config, merge, packaged_configs, read_config_file,
                                 resolve_config_path)
from human_motion.console import PATH_ADVICE, filtered_stderr
from human_motion.engine.config import BuildConfig
from human_motion.sources import parse_sources_arg

# Errors of the output folder that the user can fix (free space, permissions), said in one line.
# The errors about --out that a build turns into one line (and the next run resumes after); advice from PATH_ADVICE.
_OUTPUT_ERRNOS = {e: PATH_ADVICE[e].replace("path", "--out") for e in (
    errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.ENAMETOOLONG)}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sources", help="comma-separated sources, NAME or NAME=ROOT (default: demo, the embedded "
                                     "corpus); e.g. folder=videos/ or celebv-hq,vfhq with roots in --config")
    names = ", ".join(n for n in packaged_configs() if not n.startswith(("train", "eval")))
    p.add_argument("--config", help=f"YAML/TOML config file, or a packaged config name ({names})")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config key, e.g. --set flow.backend=farneback (repeatable)")
    p.add_argument("--out", required=True, help="output folder (local path or fsspec URL)")
    p.add_argument("--limit", type=int, metavar="N", help="at most N clips that can be built, per source (a quick "
                                                        "try; rows rejected on the way are recorded, not counted)")
    p.add_argument("--overwrite", action="store_true",
                   help="remove what an earlier build wrote in --out (nothing else) and start again")
    p.add_argument("--ray-address", help="join a running Ray cluster ('auto' or host:port); 'local' runs without "
                                         "Ray in this process; default: Ray started in this process")
    p.add_argument("-v", "--verbose", action="store_true", help="show Ray's and the models' own logging")


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
    if getattr(args, "limit", None) is not None:
        if args.limit < 1:
            raise ConfigError(f"--limit must be >= 1 (got {args.limit})")
        overrides += [f"sources.{name}.limit={args.limit}" for name in data["sources"]]
    if args.overwrite:
        overrides.append("sink.mode=overwrite")
    if args.ray_address:
        overrides.append(f"ray.address={args.ray_address}")
    return load_config(BuildConfig, None, overrides, base=data)


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


# Rejection reasons whose cause, when most clips share it, is one setting: (what is wrong, what to do).
ADVICE = {
    "outside_root": ("are links that lead out of the source root {root}",
                     "set sources.{source}.allow_links_outside_root: true to read them"),
    "missing_file": ("have no media under {root} (only {have} of {listed} clips listed do)",
                     "point sources.{source}.root at the folder the corpus' download script filled, or download the "
                     "rest (docs/sources.md shows each corpus' layout)"),
    "low_resolution": ("are smaller than select.min_source_side_px = {floor} px on their short side",
                       "lower it for a corpus of smaller videos (--set select.min_source_side_px={half}), or use "
                       "higher-resolution sources"),
}
ADVICE_SHARE = 0.5  # a reason shared by at least this share of a source's clips gets its line


def advice(summary: dict, cfg: BuildConfig) -> list[str]:
    """One line for each source where most clips were rejected for one reason a setting can fix."""
    lines = []
    for source, reasons in summary.get("rejects_by_source", {}).items():
        listed = sum(reasons.values()) + summary.get("samples_by_source", {}).get(source, 0)
        for reason, n in reasons.items():
            if reason not in ADVICE or n < ADVICE_SHARE * listed:
                continue
            scfg = cfg.sources.get(source)
            what, todo = ADVICE[reason]
            fill = {"root": repr(scfg.root if scfg else None), "source": source, "have": listed - n,
                    "listed": listed, "floor": cfg.select.min_source_side_px,
                    "half": cfg.select.min_source_side_px // 2}
            lines.append(f"hm build: {n} of {listed} {source} clips ({100 * n / listed:.0f}%) {what.format(**fill)} "
                         f"({reason}); {todo.format(**fill)}")
    return lines


def output_error(exc: BaseException, out: str) -> OSError | None:
    """The OSError about writing ``out`` behind ``exc`` (raised here, or in a Ray worker and wrapped), if any."""
    root = os.path.abspath(out)
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in _OUTPUT_ERRNOS:
            name = os.path.abspath(str(exc.filename)) if exc.filename else None
            if name is None or name.startswith(root) or root.startswith(name):
                return exc
        exc = getattr(exc, "cause", None) or exc.__cause__ or exc.__context__
    return None


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    if not args.verbose:
        os.environ.setdefault("HM_QUIET_NATIVE", "1")  # mediapipe's C++ start-up chatter (backends/face_models.py)
    cfg = load_build_config(args)
    from human_motion.engine.build import build

    started = time.time()
    try:
        with filtered_stderr(enabled=not args.verbose) as console:
            summary = build(cfg, args.out, verbose=args.verbose, console=console)
    except Exception as e:
        err = output_error(e, args.out)
        if err is None:
            raise
        where = err.filename or args.out
        print(f"hm build: cannot write {where}: {err.strerror}; {_OUTPUT_ERRNOS[err.errno]}, then run the same "
              "command again to resume (finished shards are kept)", file=sys.stderr)
        return 1
    finally:
        _shutdown_ray()
    print(format_summary(summary, time.time() - started))
    for line in advice(summary, cfg):
        print(line, file=sys.stderr)
    out = args.out.rstrip("/")
    print(f"wrote {out}/index.parquet, rejects.parquet, manifest.json and {summary['shards']} shard(s)")
    return 0


def _shutdown_ray() -> None:
    """Stop the Ray this process started before the interpreter exits (its threads must not outlive it)."""
    if "ray" in sys.modules:
        from human_motion.engine.ray_session import stop_ray

        stop_ray()
