"""``hm verify SHARDS``: check that a build's shards, index and sample schema agree.

Every ``{id:06d}.tar`` must open and end with the end-of-archive marker; every member must decode (mp4 with PyAV,
jpg with OpenCV, npy without pickles, json); each sample must hold exactly the members of ``schema.MEMBERS``
(builds of schema 1 stored static samples as ``jpg``) and a json valid against ``schema.SAMPLE_FIELDS``, with arrays
and video of the
shapes the json states; ``index.parquet`` must list every sample once and nothing else; no key may appear twice,
within a shard or across shards; every shard needs its ``_stats.json`` (counting the tar's samples) and its two
parquets. Each problem is printed as one line naming
``shard/key.member``; the exit status is 1 when there is any. Nothing is ever unpickled.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import multiprocessing
import sys
import tarfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

import fsspec
import numpy as np
import pandas as pd

from human_motion.schema import (INDEX_SCHEMA, MEMBERS, READABLE_SCHEMA_VERSIONS, SAMPLE_FIELDS, STATIC_MEMBERS_V1,
                                 safe_key)

STATS_SUFFIX = "_stats.json"  # as human_motion.engine.writer writes it
TAR_END = 1024  # a tar ends with two 512-byte blocks of zeros
COMPARED = ("source", "clip_id", "window", "static", "num_frames", "size_px", "action", "intensity")


@dataclass(frozen=True)
class VerifyConfig:
    decode_media: bool = True  # False: skip decoding mp4/jpg pixels (structure, json and npy are still checked)
    norm_tol: float = 1e-3  # |‖arcface‖ - 1| allowed
    workers: int = 1  # processes, one shard at a time each

    def __post_init__(self):
        if self.workers < 1 or self.norm_tol <= 0:
            raise ValueError("workers must be >= 1 and norm_tol > 0")


@dataclass
class ShardReport:
    """One shard's result: its samples (key -> the json fields the index is compared on) and its problems."""

    name: str
    samples: dict[str, dict] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    members: int = 0


@dataclass
class VerifyReport:
    shards: int = 0
    samples: int = 0
    members: int = 0
    index_rows: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


# ---------------------------------------------------------------------------------------------------------- one sample
def _type_name(t) -> str:
    return " or ".join(x.__name__ for x in t) if isinstance(t, tuple) else t.__name__


def _is_type(value, expected) -> bool:
    """isinstance, where JSON's numbers are lenient one way only: an int is a valid float, a bool is never a number."""
    types = expected if isinstance(expected, tuple) else (expected,)
    if isinstance(value, bool):
        return bool in types
    if float in types and isinstance(value, int):
        return True
    return isinstance(value, types)


def _reject_constant(name: str):
    raise ValueError(f"non-finite number {name}")


def check_sample_json(key: str, meta) -> list[str]:
    """Problems of one sample's json against schema.SAMPLE_FIELDS and its own consistency (messages without prefix)."""
    if not isinstance(meta, dict):
        return [f"is a JSON {type(meta).__name__}, not an object"]
    v1 = meta.get("schema_version") == 1
    problems = [f"missing field {name!r}" for name in SAMPLE_FIELDS
                if name not in meta and not (v1 and name == "media")]
    for name, (expected, _) in SAMPLE_FIELDS.items():
        if name in meta and not _is_type(meta[name], expected):
            problems.append(f"field {name!r} is {type(meta[name]).__name__}, expected {_type_name(expected)}")
    if problems:
        return problems
    if meta["schema_version"] not in READABLE_SCHEMA_VERSIONS:
        problems.append(f"schema_version {meta['schema_version']}, this code reads {READABLE_SCHEMA_VERSIONS}")
    if meta["key"] != key:
        problems.append(f"json key {meta['key']!r} differs from the member key")
    expected_key = safe_key(meta["source"], meta["clip_id"], meta["window"])
    if expected_key != key:
        problems.append(f"key is not safe_key(source, clip_id, window) = {expected_key!r}")
    if meta["num_frames"] < 1 or meta["size_px"] < 8 or meta["size_px"] % 8:
        problems.append(f"num_frames {meta['num_frames']} / size_px {meta['size_px']} out of range")
    if v1 and meta["static"] != (meta["num_frames"] == 1):
        problems.append(f"static={meta['static']} with num_frames={meta['num_frames']}")
    if meta["static"] and meta["intensity"] != 0:
        problems.append(f"static sample with intensity {meta['intensity']}")
    if not (math.isfinite(meta["intensity"]) and meta["intensity"] >= 0):
        problems.append(f"intensity {meta['intensity']} is not a finite number >= 0")
    steps = meta["intensity_per_step"]
    if not (v1 and meta["static"]) and len(steps) != meta["num_frames"] - 1:
        problems.append(f"{len(steps)} intensity_per_step values for {meta['num_frames']} frames")
    if len(meta["span_s"]) != 2:
        problems.append(f"span_s has {len(meta['span_s'])} values, expected [start, end]")
    if not isinstance(meta["id_embedding"].get("dim"), int) or meta["id_embedding"]["dim"] < 1:
        problems.append(f"id_embedding.dim is {meta['id_embedding'].get('dim')!r}, expected a positive int")
    return problems


def load_npy(data: bytes) -> np.ndarray:
    """An .npy array, never unpickled (object arrays, pickles and .npz archives are refused)."""
    if not data.startswith(b"\x93NUMPY"):
        raise ValueError("not an .npy array (bad magic)")
    return np.lib.format.read_array(io.BytesIO(data), allow_pickle=False)


def _check_video(data: bytes, meta: dict | None, cfg: VerifyConfig, ext: str) -> list[str]:
    from human_motion.media import decode_jpg, decode_mp4_bytes

    if not cfg.decode_media:
        return [] if data else ["is empty"]
    frames = decode_mp4_bytes(data) if ext == "mp4" else decode_jpg(data)[None]
    problems = []
    if meta is not None:
        want = (meta["num_frames"], meta["size_px"], meta["size_px"], 3)
        if frames.shape != want:
            problems.append(f"decodes to {frames.shape[0]} frames of {frames.shape[2]}x{frames.shape[1]}, json says "
                            f"{want[0]} of {want[1]}x{want[2]}")
    return problems


def _check_member(ext: str, data: bytes, meta: dict | None, cfg: VerifyConfig) -> list[str]:
    """Decode one member and check it against the sample's json (``meta`` None when the json is unusable)."""
    if ext in ("mp4", "jpg"):
        return _check_video(data, meta, cfg, ext)
    if ext == "face.jpg":
        if not cfg.decode_media:
            return [] if data else ["is empty"]
        from human_motion.media import decode_jpg

        face = decode_jpg(data)
        return [] if face.shape[0] == face.shape[1] else [f"face crop is {face.shape[1]}x{face.shape[0]}, not square"]
    if ext == "json":
        return []  # parsed and checked before the others
    arr = load_npy(data)
    if ext == "arcface.npy":
        problems = [] if arr.dtype == np.float32 else [f"dtype {arr.dtype}, expected float32"]
        dim = meta["id_embedding"]["dim"] if meta is not None else None
        if arr.ndim != 1 or (dim is not None and arr.shape != (dim,)):
            problems.append(f"shape {arr.shape}, json id_embedding.dim says ({dim},)")
        norm = float(np.linalg.norm(arr.astype(np.float64)))
        if not math.isfinite(norm) or abs(norm - 1) > cfg.norm_tol:
            problems.append(f"L2 norm {norm:.4g}, expected 1")
        return problems
    if ext == "flow.npy":
        problems = [] if arr.dtype == np.uint8 else [f"dtype {arr.dtype}, expected uint8"]
        if meta is None:
            return problems
        side = meta["size_px"] // 8
        steps = len(meta["intensity_per_step"]) if meta["static"] and meta["schema_version"] == 1 \
            else meta["num_frames"] - 1
        if arr.shape != (steps, side, side):
            problems.append(f"shape {arr.shape}, expected ({steps}, {side}, {side}) from the json")
        elif meta["static"] and arr.any():
            problems.append("non-zero flow in a static sample")
        return problems
    return []


def check_sample(key: str, members: dict[str, bytes], cfg: VerifyConfig) -> tuple[list[str], dict | None]:
    """Problems of one sample as ``{key}.{member}: message`` lines, and its json (None when unusable)."""
    problems: list[str] = []
    meta = None
    if "json" not in members:
        problems.append(f"{key}.json: missing")
    else:
        try:
            meta = json.loads(members["json"].decode("utf-8"), parse_constant=_reject_constant)
        except (UnicodeDecodeError, ValueError) as e:
            problems.append(f"{key}.json: does not decode: {e}")
        else:
            json_problems = check_sample_json(key, meta)
            problems += [f"{key}.json: {p}" for p in json_problems]
            if json_problems and (not isinstance(meta, dict) or any(p.startswith(("missing", "field", "is a"))
                                                                    for p in json_problems)):
                meta = None  # field types are wrong: shapes cannot be checked against it
    if meta is not None:
        expected = STATIC_MEMBERS_V1 if meta["static"] and meta["schema_version"] == 1 else MEMBERS
        problems += [f"{key}.{m}: missing" for m in expected if m not in members]
        problems += [f"{key}.{m}: not a member of a {'static' if meta['static'] else 'video'} sample"
                     for m in members if m not in expected]
    for ext, data in members.items():
        if ext == "json":
            continue
        try:
            problems += [f"{key}.{ext}: {p}" for p in _check_member(ext, data, meta, cfg)]
        except Exception as e:  # noqa: BLE001 - any failure to decode is the finding itself
            problems.append(f"{key}.{ext}: does not decode: {type(e).__name__}: {str(e)[:200]}")
    return problems, meta


# ---------------------------------------------------------------------------------------------------------- one shard
def _flush(report: ShardReport, key: str, members: dict[str, bytes], cfg: VerifyConfig) -> None:
    problems, meta = check_sample(key, members, cfg)
    report.problems += [f"{report.name}.tar/{p}" for p in problems]
    report.samples[key] = {k: meta.get(k) for k in COMPARED} if meta is not None else {}


def verify_shard(root: str, name: str, cfg: VerifyConfig = VerifyConfig()) -> ShardReport:
    """Open ``{name}.tar`` under ``root``, decode and check every sample, and check the shard's _stats.json."""
    fs, base = fsspec.core.url_to_fs(root)
    base = base.rstrip("/")
    report = ShardReport(name)
    tar_path = f"{base}/{name}.tar"
    stats = _read_stats(fs, f"{base}/{name}{STATS_SUFFIX}", report)
    if stats is None and not report.problems:
        report.problems.append(f"{name}.tar: has no {name}{STATS_SUFFIX} (the sink writes it last: unfinished shard?)")
    if not fs.exists(tar_path):
        if isinstance(stats, dict) and stats.get("samples") == 0:  # a shard whose every clip was rejected: no tar
            _check_shard_files(fs, base, name, report, stats)
        else:
            report.problems.append(f"{name}.tar: missing ({name}{STATS_SUFFIX} exists)")
        return report
    key, members, done, current = None, {}, set(), "the first header"
    try:
        with fs.open(tar_path, "rb") as f, tarfile.open(fileobj=f, mode="r:") as tar:
            for info in tar:
                report.members += 1
                current = f"member {report.members} ({info.name})"
                if not info.isfile() or "/" in info.name:
                    report.problems.append(f"{name}.tar/{info.name}: not a plain top-level file member")
                    continue
                k, _, ext = info.name.partition(".")
                if k != key:
                    if key is not None:
                        _flush(report, key, members, cfg)
                        done.add(key)
                    if k in done:
                        report.problems.append(f"{name}.tar/{k}: key appears twice in this shard")
                    key, members = k, {}
                data = tar.extractfile(info).read()
                if ext in members:
                    report.problems.append(f"{name}.tar/{info.name}: member appears twice")
                members[ext] = data
            end = tar.offset
        size = fs.size(tar_path)
        tail = fs.read_block(tar_path, end, TAR_END) if size >= end + TAR_END else b""
        if len(tail) < TAR_END or tail.strip(b"\0"):
            report.problems.append(f"{name}.tar: truncated: no end-of-archive marker after byte {end} "
                                   f"(file has {size} bytes)")
    except (tarfile.TarError, OSError, EOFError) as e:
        report.problems.append(f"{name}.tar: truncated or corrupt at {current}: {e}")
    if key is not None:  # the last sample (or the one a read error cut short)
        _flush(report, key, members, cfg)
    _check_shard_files(fs, base, name, report, stats)
    return report


def _read_stats(fs, path: str, report: ShardReport) -> dict | None:
    """A shard's _stats.json (None when it is missing; a problem when it does not read back)."""
    if not fs.exists(path):
        return None
    try:
        stats = json.loads(fs.cat(path))
    except ValueError as e:
        report.problems.append(f"{path.rsplit('/', 1)[-1]}: not valid JSON: {e}")
        return None
    return stats if isinstance(stats, dict) else {}


def _check_shard_files(fs, base: str, name: str, report: ShardReport, stats: dict | None) -> None:
    """The sink's other per-shard files: the index parquet (a shard with samples), the rejects parquet (a shard
    with rejections, or of a build that wrote one for every shard), and a _stats.json that counts the tar's
    samples."""
    needed = [f"{name}.parquet"] if report.samples or (stats or {}).get("samples") else []
    if stats is None or stats.get("rejects", 1) > 0:
        needed.append(f"{name}_rejects.parquet")
    for part in needed:
        if not fs.exists(f"{base}/{part}"):
            report.problems.append(f"{name}.tar: has no {part}")
    if stats is None:
        return
    if stats.get("samples") != len(report.samples):
        report.problems.append(f"{name}{STATS_SUFFIX}: says {stats.get('samples')} samples, "
                               f"{name}.tar holds {len(report.samples)}")


# ---------------------------------------------------------------------------------------------------------- the build
def shard_names(fs, base: str) -> list[str]:
    """Every shard a folder has: a ``{id}.tar`` or a ``{id}_stats.json`` with an all-digit id."""
    names = set()
    for p in fs.glob(f"{base}/*.tar") + fs.glob(f"{base}/*{STATS_SUFFIX}"):
        stem = p.rsplit("/", 1)[-1].removesuffix(".tar").removesuffix(STATS_SUFFIX)
        if stem.isdigit():
            names.add(stem)
    return sorted(names)


def _same(a, b) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        try:
            return math.isclose(float(a), float(b), rel_tol=1e-6, abs_tol=1e-6)
        except (TypeError, ValueError):
            return False
    return a == b


def check_index(index: pd.DataFrame, shards: list[ShardReport]) -> list[str]:
    """Index against shards: every row has a sample in the shard it names, every sample a row, no key twice."""
    problems = []
    missing_cols = [c for c in INDEX_SCHEMA.names if c not in index.columns]
    if missing_cols:
        return [f"index.parquet: missing columns {missing_cols}"]
    where: dict[str, list[str]] = {}
    for rep in shards:
        for key in rep.samples:
            where.setdefault(key, []).append(rep.name)
    for key, names in where.items():
        if len(names) > 1:
            problems.append(f"{names[1]}.tar/{key}: duplicate key, also in {', '.join(n + '.tar' for n in names[:1])}")
    for key in index.loc[index["key"].duplicated(), "key"].unique():
        problems.append(f"index.parquet: key {key} has {int((index['key'] == key).sum())} rows")
    samples = {rep.name: rep.samples for rep in shards}
    for row in index.itertuples(index=False):
        holders = where.get(row.key)
        if not holders:
            problems.append(f"index.parquet: row {row.key} (shard {row.shard}): no such sample in any shard")
        elif row.shard not in holders:
            problems.append(f"index.parquet: row {row.key} names shard {row.shard}, the sample is in "
                            f"{holders[0]}.tar")
        else:
            meta = samples[row.shard][row.key]
            diff = [c for c in COMPARED if meta and not _same(getattr(row, c), meta.get(c))]
            if diff:
                problems.append(f"index.parquet: row {row.key}: {', '.join(diff)} differ from "
                                f"{row.shard}.tar/{row.key}.json")
    indexed = set(index["key"])
    for rep in shards:
        problems += [f"{rep.name}.tar/{key}: no row in index.parquet" for key in rep.samples if key not in indexed]
    return problems


def verify_build(root: str, cfg: VerifyConfig = VerifyConfig()) -> VerifyReport:
    fs, base = fsspec.core.url_to_fs(root)
    base = base.rstrip("/")
    report = VerifyReport()
    if not fs.isdir(base):
        report.problems.append(f"{root}: no such folder")
        return report
    names = shard_names(fs, base)
    if cfg.workers > 1 and len(names) > 1:
        # Spawned, not forked: a child forked from a process with threads running (torch's, FFmpeg's, Ray's, a
        # test runner's) can inherit a lock another thread held and wait on it forever; one did under pytest.
        with ProcessPoolExecutor(cfg.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            shards = list(pool.map(verify_shard, [root] * len(names), names, [cfg] * len(names)))
    else:
        shards = [verify_shard(root, n, cfg) for n in names]
    for rep in shards:
        report.problems += rep.problems
        report.samples += len(rep.samples)
        report.members += rep.members
    report.shards = len(shards)
    try:
        with fs.open(f"{base}/index.parquet", "rb") as f:
            index = pd.read_parquet(f)
    except FileNotFoundError:
        report.problems.append("index.parquet: missing (the build did not finish: run hm build again)")
        return report
    except Exception as e:  # noqa: BLE001 - pyarrow raises several types for a broken file
        report.problems.append(f"index.parquet: unreadable: {type(e).__name__}: {e}")
        return report
    report.index_rows = len(index)
    report.problems += check_index(index, shards)
    if not names:
        report.problems.append(f"{root}: no shards (*.tar) found")
    return report


# ---------------------------------------------------------------------------------------------------------- cli
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("shards", help="a build folder (what hm build --out wrote)")
    parser.add_argument("--workers", type=int, default=1, help="processes checking shards in parallel")
    parser.add_argument("--no-decode", action="store_true",
                        help="skip decoding mp4/jpg pixels (faster; structure, json, npy and index still checked)")
    parser.add_argument("--max-problems", type=int, default=1000, help="problems printed (all are counted)")


def run(args: argparse.Namespace) -> int:
    cfg = VerifyConfig(decode_media=not args.no_decode, workers=args.workers)
    report = verify_build(args.shards, cfg)
    for line in report.problems[: args.max_problems]:
        print(line)
    if len(report.problems) > args.max_problems:
        print(f"... and {len(report.problems) - args.max_problems} more")
    what = (f"{report.shards} shards, {report.samples} samples, {report.members} members, "
            f"{report.index_rows} index rows")
    if report.ok:
        print(f"hm verify: ok: {what}")
        return 0
    print(f"hm verify: {len(report.problems)} problems in {what}", file=sys.stderr)
    return 1
