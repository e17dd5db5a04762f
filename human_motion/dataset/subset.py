"""``hm select``: tighter thresholds, an intensity-balanced subset, or per-sample sampling weights, from an existing
build's index, with no model run.

Thresholds first (``--set select.KEY=VALUE``, the keys of the build's ``select`` section): every score the build's
stages wrote is a column of ``index.parquet``, so the same checks the build's select steps applied
(stages/select.py) are applied again to the index, starting from the build's own thresholds (its manifest) with
the ``--set`` values on top; samples that fail are left out and counted by reason.

The project page says the curated set was resampled so that motion intensities are balanced over [0, 20]. This
reads ``index.parquet`` (or the per-shard index files of a build folder), puts each sample's ``intensity`` into
bins (default ``0:20:5``: [0, 5), [5, 10), [10, 15), [15, 20]), and writes either

- a subset (default): the same number of samples from every non-empty bin (``--per-bin N``, default the size of
  the smallest non-empty bin), chosen by a seeded hash of the key, so the choice is repeatable and stable when
  the index grows; or
- weights (``--weights``): every sample with weight ``N / (B * n_bin)`` (B non-empty bins, n_bin samples in its bin),
  so that sampling proportionally to the weights draws every bin equally often; the weights average to 1.

Intensities outside the range go to the nearest end bin (``--outside clip``, default) or are left out
(``--outside drop``: weight 0, never in the subset). The output's format follows its extension: ``.parquet``
(key, shard, source, static, intensity, bin, and weight), ``.txt`` (one key per line; ``key<TAB>weight`` with
``--weights``) or ``.csv``. No sample is re-decoded: the shards stay as they are, and a loader filters or weights
by key.
"""

from __future__ import annotations

import argparse
import hashlib
import pathlib

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from human_motion.config import ConfigError

DEFAULT_BINS = "0:20:5"


def parse_bins(text: str) -> np.ndarray:
    """``start:stop:step`` (stop included) or a comma list of edges -> increasing bin edges."""
    try:
        if ":" in text:
            start, stop, step = (float(v) for v in text.split(":"))
            if step <= 0 or stop <= start:
                raise ValueError
            edges = np.arange(start, stop + step * 1e-6, step)
            if edges[-1] < stop - 1e-9:
                edges = np.append(edges, stop)
        else:
            edges = np.array([float(v) for v in text.split(",") if v.strip()])
    except ValueError:
        raise ConfigError(f"--bins {text!r}: use start:stop:step (e.g. 0:20:5) or edges (e.g. 0,2,5,10,20)") from None
    if len(edges) < 2 or not np.all(np.isfinite(edges)) or np.any(np.diff(edges) <= 0):
        raise ConfigError(f"--bins {text!r}: need at least two increasing, finite edges")
    return edges


def read_index(path: str | pathlib.Path) -> pa.Table:
    """A build's index: ``index.parquet`` itself, a build folder holding it, or a folder of shard index files."""
    p = pathlib.Path(path)
    if p.is_file():
        files = [p]
    elif (p / "index.parquet").is_file():
        files = [p / "index.parquet"]
    elif p.is_dir():
        files = sorted(f for f in p.glob("*.parquet") if f.stem.isdigit())
    else:
        raise ConfigError(f"{str(p)!r} does not exist; pass a build folder or its index.parquet")
    if not files:
        raise ConfigError(f"{str(p)!r} holds no index.parquet and no shard index files; is it a build folder?")
    try:
        table = pa.concat_tables([pq.read_table(f) for f in files], promote_options="default")
    except (pa.ArrowInvalid, OSError) as e:
        raise ConfigError(f"cannot read the index in {str(p)!r}: {e}") from None
    missing = [c for c in ("key", "intensity") if c not in table.column_names]
    if missing:
        raise ConfigError(f"the index in {str(p)!r} lacks column(s) {', '.join(missing)}")
    return table


def assign_bins(intensity: np.ndarray, edges: np.ndarray, outside: str = "clip") -> np.ndarray:
    """Bin index per sample (the last bin includes its upper edge); -1 for NaN, and for values outside the
    edges when ``outside == "drop"``."""
    x = np.asarray(intensity, np.float64)
    n_bins = len(edges) - 1
    bins = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, n_bins - 1)
    bins[x == edges[-1]] = n_bins - 1
    out = (x < edges[0]) | (x > edges[-1])
    if outside == "drop":
        bins[out] = -1
    bins[~np.isfinite(x)] = -1
    return bins


def _rank(keys: list[str], seed: int) -> np.ndarray:
    return np.array([int(hashlib.sha1(f"{seed}:{k}".encode()).hexdigest()[:12], 16) for k in keys], np.int64)


def balanced_subset(keys: list[str], bins: np.ndarray, n_bins: int, per_bin: int | None = None,
                    seed: int = 0) -> np.ndarray:
    """Boolean mask: up to ``per_bin`` samples of every bin (default: as many as the smallest non-empty bin)."""
    counts = np.bincount(bins[bins >= 0], minlength=n_bins)
    nonempty = counts[counts > 0]
    if len(nonempty) == 0:
        return np.zeros(len(keys), bool)
    target = int(nonempty.min()) if per_bin is None else per_bin
    rank = _rank(keys, seed)
    keep = np.zeros(len(keys), bool)
    for b in range(n_bins):
        idx = np.flatnonzero(bins == b)
        keep[idx[np.argsort(rank[idx], kind="stable")[:target]]] = True
    return keep


def balanced_weights(bins: np.ndarray, n_bins: int) -> np.ndarray:
    """Weights that make every non-empty bin equally likely; mean 1 over the samples that have a bin."""
    counts = np.bincount(bins[bins >= 0], minlength=n_bins).astype(np.float64)
    valid = bins >= 0
    n, b = valid.sum(), (counts > 0).sum()
    w = np.zeros(len(bins))
    if n:
        w[valid] = n / (b * counts[bins[valid]])
    return w


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("index", metavar="INDEX_OR_SHARDS", help="a build folder, its index.parquet, or shard index files")
    p.add_argument("--out", required=True, help="output file: .parquet, .txt or .csv")
    p.add_argument("--bins", default=DEFAULT_BINS,
                   help=f"intensity bins: start:stop:step or comma-separated edges (default {DEFAULT_BINS})")
    p.add_argument("--weights", action="store_true", help="write per-sample sampling weights instead of a subset")
    p.add_argument("--per-bin", type=int, help="subset: samples per bin (default: the smallest non-empty bin)")
    p.add_argument("--outside", choices=("clip", "drop"), default="clip",
                   help="intensities outside the bins: into the end bins (clip, default) or left out (drop)")
    p.add_argument("--exclude-static", action="store_true", help="leave out static (image) samples")
    p.add_argument("--seed", type=int, default=0, help="seed of the subset choice (default 0)")
    p.add_argument("--set", action="append", default=[], metavar="select.KEY=VALUE",
                   help="a tighter threshold, e.g. --set select.min_face_score=0.9 (repeatable); applied to the "
                        "scores in the index, starting from the build's own thresholds")
    p.add_argument("--no-balance", action="store_true",
                   help="keep every sample that passes the thresholds (no per-bin subset, no weights)")


def build_select_config(path: str | pathlib.Path, sets: list[str]):
    """The build's own select section (from manifest.json beside the index, else the defaults), then ``sets``."""
    import json

    from human_motion.config import load_config
    from human_motion.stages.select import SelectConfig

    p = pathlib.Path(path)
    manifest = (p if p.is_dir() else p.parent) / "manifest.json"
    base = {}
    if manifest.is_file():
        try:
            base = json.loads(manifest.read_text(encoding="utf-8")).get("config", {}).get("select", {}) or {}
        except (ValueError, OSError) as e:
            raise ConfigError(f"{manifest}: not a readable build manifest ({e}); pass the index.parquet "
                              "alone") from None
    overrides = []
    for text in sets:
        if not text.startswith("select."):
            raise ConfigError(f"--set {text!r}: hm select takes thresholds of the select section, e.g. "
                              "--set select.min_face_score=0.9")
        overrides.append(text.removeprefix("select."))
    return load_config(SelectConfig, None, overrides, base=base)


def apply_thresholds(table: pa.Table, cfg) -> tuple[np.ndarray, dict[str, int]]:
    """(mask of samples that pass every check whose score the index has, rejections by reason)."""
    from collections import Counter

    from human_motion.schema import SCORE_COLUMNS
    from human_motion.stages.select import first_failure

    cols = {c: table.column(c).to_pylist() for c in SCORE_COLUMNS if c in table.column_names}
    kinds = table.column("embedding_kind").to_pylist() if "embedding_kind" in table.column_names \
        else [None] * table.num_rows
    keep = np.ones(table.num_rows, bool)
    reasons: Counter = Counter()
    for i in range(table.num_rows):
        scores = {c: v[i] for c, v in cols.items() if v[i] is not None}
        failed = first_failure(scores, cfg, None, kinds[i])
        if failed:
            keep[i] = False
            reasons[failed[0]] += 1
    return keep, dict(reasons.most_common())


def select_balanced(table: pa.Table, edges: np.ndarray, weights: bool = False, per_bin: int | None = None,
                    outside: str = "clip", exclude_static: bool = False, seed: int = 0) -> pa.Table:
    """The output table: every sample with its bin and weight, or the balanced subset."""
    keys = table.column("key").to_pylist()
    intensity = np.array([np.nan if v is None else v for v in table.column("intensity").to_pylist()], np.float64)
    bins = assign_bins(intensity, edges, outside)
    if exclude_static and "static" in table.column_names:
        bins[np.array(table.column("static").to_pylist(), bool)] = -1
    n_bins = len(edges) - 1
    cols = {"key": keys}
    for c in ("shard", "source", "static"):
        if c in table.column_names:
            cols[c] = table.column(c).to_pylist()
    cols["intensity"] = intensity.tolist()
    cols["bin"] = bins.tolist()
    out = pa.table(cols)
    if weights:
        return out.append_column("weight", pa.array(balanced_weights(bins, n_bins)))
    if per_bin is not None and per_bin < 1:
        raise ConfigError("--per-bin must be >= 1")
    keep = balanced_subset(keys, bins, n_bins, per_bin, seed)
    return out.filter(pa.array(keep))


def _all(table: pa.Table) -> pa.Table:
    """Every sample, with the columns a subset file has."""
    return pa.table({c: table.column(c) for c in ("key", "shard", "source", "static", "intensity")
                     if c in table.column_names})


def write_output(table: pa.Table, path: pathlib.Path, weights: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        pq.write_table(table, tmp)
    elif suffix == ".csv":
        pacsv.write_csv(table, tmp)
    elif suffix == ".txt":
        keys = table.column("key").to_pylist()
        if weights:
            lines = [f"{k}\t{w:.6g}" for k, w in zip(keys, table.column("weight").to_pylist())]
        else:
            lines = keys
        tmp.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    else:
        raise ConfigError(f"--out {str(path)!r}: use a .parquet, .txt or .csv file name")
    tmp.replace(path)


def run(args: argparse.Namespace) -> int:
    edges = parse_bins(args.bins)
    out_path = pathlib.Path(args.out)
    if out_path.suffix.lower() not in (".parquet", ".txt", ".csv"):
        raise ConfigError(f"--out {args.out!r}: use a .parquet, .txt or .csv file name")
    table = read_index(args.index)
    keep, reasons = apply_thresholds(table, build_select_config(args.index, args.set))
    if reasons:
        print(f"thresholds leave out {int((~keep).sum())} of {table.num_rows} samples: "
              + ", ".join(f"{r} {n}" for r, n in reasons.items()))
        table = table.filter(pa.array(keep))
    if args.no_balance:
        result = _all(table)
        write_output(result, out_path, False)
        print(f"wrote {result.num_rows} samples to {out_path}")
        return 0
    result = select_balanced(table, edges, args.weights, args.per_bin, args.outside, args.exclude_static, args.seed)
    write_output(result, out_path, args.weights)
    all_bins = assign_bins(np.array([np.nan if v is None else v for v in table.column("intensity").to_pylist()]),
                           edges, args.outside)
    n_bins = len(edges) - 1
    before = np.bincount(all_bins[all_bins >= 0], minlength=n_bins)
    chosen = np.array(result.column("bin").to_pylist(), np.int64)
    after = np.bincount(chosen[chosen >= 0], minlength=n_bins)
    print(f"{'bin':>14}  {'samples':>8}  {'weight' if args.weights else 'kept':>8}")
    for b in range(n_bins):
        last = "]" if b == n_bins - 1 else ")"
        label = f"[{edges[b]:g}, {edges[b + 1]:g}{last}"
        if args.weights:
            w = result.column("weight").to_numpy()[chosen == b]
            shown = f"{w[0]:.3g}" if len(w) else "-"
        else:
            shown = str(after[b])
        print(f"{label:>14}  {before[b]:>8}  {shown:>8}")
    left_out = int((all_bins < 0).sum())
    what = "weights of" if args.weights else "a balanced subset of"
    print(f"wrote {what} {result.num_rows if not args.weights else int((chosen >= 0).sum())} samples to {out_path}"
          + (f" ({left_out} outside the bins or without intensity)" if left_out else ""))
    return 0
