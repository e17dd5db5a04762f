"""``hm stats SHARDS``: what a build made, at a glance.

Reads only ``index.parquet``, ``rejects.parquet``, ``manifest.json`` and the per-shard ``*_stats.json`` (all numbers
are vectorised pandas over the index, so 100,000 rows take well under a second); only ``--contact-sheet`` opens
tars, and then only for the few samples it shows.

    hm stats shards/                         terminal tables
    hm stats shards/ --json                  the same numbers as one JSON object (see compute_stats)
    hm stats shards/ --plots plots/          PNG charts (intensity, actions, faces, rejects, timings) and the sheet
    hm stats shards/ --contact-sheet s.png   sample frames ordered by intensity, action phrase under each
"""

from __future__ import annotations

import argparse
import json
import math
import sys

import numpy as np
import pandas as pd

from human_motion.dataset.tables import BuildTables, StatsConfig, load_build

QUANTILES = {"p05": 0.05, "p25": 0.25, "p50": 0.5, "p75": 0.75, "p95": 0.95}


# ---------------------------------------------------------------------------------------------------------- numbers
def _num(x) -> float | int | None:
    """A JSON-safe number (NaN and infinities become None)."""
    if x is None:
        return None
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    x = float(x)
    return x if math.isfinite(x) else None


def summarize(values: pd.Series) -> dict:
    """count, mean, min, p05..p95, max of the non-null values (None for an empty series)."""
    v = pd.to_numeric(values, errors="coerce").dropna()
    out = {"count": int(len(v)), "mean": _num(v.mean()) if len(v) else None, "min": _num(v.min()) if len(v) else None}
    q = v.quantile(list(QUANTILES.values())) if len(v) else None
    for name, p in QUANTILES.items():
        out[name] = _num(q.loc[p]) if q is not None else None
    out["max"] = _num(v.max()) if len(v) else None
    return out


def intensity_bins(cfg: StatsConfig) -> list[str]:
    n = int(math.ceil(cfg.intensity_max / cfg.intensity_bin_width))
    w = cfg.intensity_bin_width
    return [f"{i * w:g}-{(i + 1) * w:g}" for i in range(n)] + [f"{n * w:g}+"]


def intensity_bin_ids(intensity: pd.Series, cfg: StatsConfig) -> np.ndarray:
    """Bin of each value: floor(v / width), values at or above intensity_max (and below 0) in the end bins, -1 for a
    missing value."""
    n = int(math.ceil(cfg.intensity_max / cfg.intensity_bin_width))
    v = pd.to_numeric(intensity, errors="coerce").to_numpy(dtype=float)
    ids = np.clip(np.floor(np.nan_to_num(v, nan=0.0) / cfg.intensity_bin_width), 0, n).astype(int)
    return np.where(np.isnan(v), -1, ids)


def _counts(series: pd.Series) -> dict:
    return {str(k): int(v) for k, v in series.fillna("").value_counts().items()}


def compute_stats(build: BuildTables, cfg: StatsConfig = StatsConfig()) -> dict:
    """Every number ``hm stats`` shows, as plain JSON types. Pure: reads only the tables in ``build``."""
    idx, rej = build.index, build.rejects
    n_bins = len(intensity_bins(cfg))
    bin_ids = intensity_bin_ids(idx["intensity"], cfg)
    static = idx["static"].fillna(False).astype(bool)
    video = idx[~static]

    by_source = {}
    has_bin = bin_ids >= 0
    hist = (pd.crosstab(idx["source"].to_numpy()[has_bin], bin_ids[has_bin]).reindex(columns=range(n_bins),
                                                                                      fill_value=0)
            if has_bin.any() else None)
    for source, group in idx.groupby("source", sort=True):
        by_source[str(source)] = {
            "samples": int(len(group)),
            "static": int(group["static"].fillna(False).astype(bool).sum()),
            "clips": int(group["clip_id"].nunique()),
            "intensity": summarize(group["intensity"]),
            "intensity_hist": ([int(c) for c in hist.loc[source].tolist()] if hist is not None and source in hist.index
                               else [0] * n_bins),
        }

    actions = idx["action"].fillna("")
    top = actions.value_counts().head(cfg.top_actions)
    desc = idx["description"].fillna("")
    stats = {
        "root": build.root,
        "shards": len(build.shard_stats) or int(build.manifest.get("summary", {}).get("shards", 0)),
        "samples": int(len(idx)),
        "video_samples": int(len(video)),
        "static_samples": int(static.sum()),
        "clips": int(idx[["source", "clip_id"]].drop_duplicates().shape[0]),
        "by_source": by_source,
        "intensity": {
            "all": summarize(idx["intensity"]),
            "video": summarize(video["intensity"]),
            "bins": intensity_bins(cfg),
            "hist": [int(c) for c in np.bincount(bin_ids[has_bin], minlength=n_bins)],
        },
        "actions": {
            "distinct": int(actions.nunique()),
            "empty": int((actions.str.strip() == "").sum()),
            "top": [[str(a), int(c)] for a, c in top.items()],
        },
        "description_chars": summarize(desc.str.len()),
        "description_words": summarize(desc.str.count(r"\S+")),
        "face_area_frac": summarize(idx["face_area_frac"]),
        "face_score": summarize(idx["face_score"]),
        "id_min_cos": summarize(idx["id_min_cos"]),
        "scores": score_summaries(idx, (build.manifest.get("config") or {}).get("select") or {}),
        "backends": {c: _counts(idx[c]) for c in ("flow_backend", "embedding_kind", "caption_backend", "size_px")},
        "rejects": {
            "total": int(len(rej)),
            "by_stage": _counts(rej["stage"]),
            "by_reason": _counts(rej["reason"]),
            "by_stage_reason": [[str(s), str(r), int(n)] for (s, r), n in
                                rej.groupby(["stage", "reason"]).size().sort_values(ascending=False).items()],
            "by_source": _counts(rej["source"]),
        },
        "timings": compute_timings(build),
        "notes": list(build.notes) + consistency_notes(build),
    }
    return stats


def score_summaries(idx: pd.DataFrame, select: dict) -> dict:
    """Every score column of the index (schema.SCORE_COLUMNS) that the build has: its distribution over the kept
    samples and the threshold its select check applied, ``{"setting": "select.max_cuts", "value": 0}`` from the
    build's config (None for a score no threshold applies to)."""
    from human_motion.schema import SCORE_COLUMNS
    from human_motion.stages.select import CHECKS

    limits = {c.score: c.threshold for c in CHECKS.values() if c.threshold}
    out = {}
    for name in SCORE_COLUMNS:
        if name not in idx.columns:
            continue  # a build made before the stage scored it
        field = limits.get(name)
        threshold = {"setting": f"select.{field}", "value": select[field]} if field in select else None
        out[name] = {"threshold": threshold, **summarize(idx[name])}
    return out


def _threshold_text(threshold: dict | None) -> str:
    if not threshold:
        return ""
    value = threshold["value"]
    if isinstance(value, dict):  # per embedding kind
        return f"{threshold['setting']}: " + ", ".join(f"{k} {v:g}" for k, v in value.items())
    return f"{threshold['setting']}={value:g}"


def compute_timings(build: BuildTables) -> dict:
    """Stage seconds summed over the shards' _stats.json (the manifest's summary when there are none), per sample,
    and the wall-clock seconds of the build runs recorded in the manifest."""
    per_stage: dict[str, float] = {}
    for s in build.shard_stats:
        for stage, sec in (s.get("stage_seconds") or {}).items():
            per_stage[stage] = per_stage.get(stage, 0.0) + float(sec)
    source = "shard_stats"
    if not per_stage:
        per_stage = {k: float(v) for k, v in build.manifest.get("summary", {}).get("stage_seconds", {}).items()}
        source = "manifest" if per_stage else "none"
    n = len(build.index)
    total = sum(per_stage.values())
    runs = build.manifest.get("runs", [])
    run_seconds = sum(float(r.get("seconds", 0) or 0) for r in runs)
    return {
        "from": source,
        "stage_seconds": {k: round(v, 4) for k, v in sorted(per_stage.items(), key=lambda kv: -kv[1])},
        "stage_seconds_total": round(total, 4),
        "stage_seconds_per_sample": {k: round(v / n, 5) if n else None
                                     for k, v in sorted(per_stage.items(), key=lambda kv: -kv[1])},
        "runs": len(runs),
        "run_seconds": round(run_seconds, 3),
        "samples_per_run_second": round(len(build.index) / run_seconds, 4) if run_seconds else None,
    }


def consistency_notes(build: BuildTables) -> list[str]:
    """Cheap cross-checks between the manifest, the shards' _stats.json and the tables (hm verify does the rest)."""
    notes = []
    summary = build.manifest.get("summary", {})
    if summary and summary.get("samples") != len(build.index):
        notes.append(f"manifest summary says {summary.get('samples')} samples, index.parquet has {len(build.index)}")
    if summary and summary.get("rejects") != len(build.rejects):
        notes.append(f"manifest summary says {summary.get('rejects')} rejects, "
                     f"rejects.parquet has {len(build.rejects)}")
    if build.shard_stats:
        in_stats = sum(int(s.get("samples", 0)) for s in build.shard_stats)
        if in_stats != len(build.index):
            notes.append(f"the shards' _stats.json count {in_stats} samples, index.parquet has {len(build.index)}")
    dup = int(build.index["key"].duplicated().sum())
    if dup:
        notes.append(f"{dup} duplicated keys in index.parquet")
    return notes


# ---------------------------------------------------------------------------------------------------------- text
def _table(headers: list[str], rows: list[list], indent: str = "  ") -> str:
    """Plain-text table: numbers right-aligned (floats to 3 significant digits below 1000), text left-aligned."""
    def fmt(c) -> str:
        if c is None:
            return ""
        if isinstance(c, float):
            return f"{c:.0f}" if abs(c) >= 1000 else f"{c:.3g}"
        return str(c)

    cells = [[str(h) for h in headers]] + [[fmt(c) for c in r] for r in rows]
    numeric = [all(isinstance(r[i], (int, float)) or r[i] is None for r in rows) for i in range(len(headers))]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for j, r in enumerate(cells):
        lines.append(indent + "  ".join(c.rjust(w) if num else c.ljust(w) for c, w, num in zip(r, widths, numeric)))
        if j == 0:
            lines.append(indent + "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _summary_row(name: str, s: dict) -> list:
    return [name, s["count"], s["mean"], s["min"], *[s[k] for k in QUANTILES], s["max"]]


SUMMARY_HEADERS = ["", "n", "mean", "min", *QUANTILES, "max"]


def format_report(stats: dict) -> str:
    """The terminal view of :func:`compute_stats`."""
    out = [f"hm stats {stats['root']}",
           f"  {stats['samples']} samples ({stats['video_samples']} video, {stats['static_samples']} static) from "
           f"{stats['clips']} clips in {stats['shards']} shards; {stats['rejects']['total']} rejected", ""]
    out += ["By source", _table(["source", "samples", "static", "clips", "int p50", "int p95"],
                                [[s, v["samples"], v["static"], v["clips"], v["intensity"]["p50"],
                                  v["intensity"]["p95"]] for s, v in stats["by_source"].items()]), ""]
    it = stats["intensity"]
    out += ["Motion intensity (px/step)", _table(SUMMARY_HEADERS, [_summary_row("all", it["all"]),
                                                                  _summary_row("video", it["video"])]), ""]
    peak = max(it["hist"]) if it["hist"] and max(it["hist"]) else 1
    hist_rows = [[b, c, "#" * int(round(40 * c / peak))] + [v["intensity_hist"][i] for v in stats["by_source"].values()]
                 for i, (b, c) in enumerate(zip(it["bins"], it["hist"]))]
    out += ["Intensity histogram", _table(["bin", "n", "", *stats["by_source"]], hist_rows), ""]
    a = stats["actions"]
    out += [f"Action phrases ({a['distinct']} distinct, {a['empty']} empty; top {len(a['top'])})",
            _table(["action", "n", "%"], [[p, c, round(100 * c / max(stats["samples"], 1), 1)]
                                              for p, c in a["top"]]), ""]
    out += ["Descriptions, faces, identity", _table(SUMMARY_HEADERS, [
        _summary_row(k, stats[k]) for k in ("description_words", "description_chars", "face_area_frac", "face_score",
                                            "id_min_cos")]), ""]
    sc = stats.get("scores", {})
    out += ["Scores of the kept samples, and the threshold select applied", _table(
        ["score", "threshold", *SUMMARY_HEADERS[1:]],
        [[k, _threshold_text(v["threshold"]), *_summary_row(k, v)[1:]] for k, v in sc.items()]) if sc
        else "  none in the index", ""]
    out += ["Backends", _table(["field", "values"], [[k, ", ".join(f"{n} x{c}" for n, c in v.items())]
                                                     for k, v in stats["backends"].items()]), ""]
    r = stats["rejects"]
    out += [f"Rejections ({r['total']})", _table(["stage", "reason", "n"], r["by_stage_reason"]) if r["total"]
            else "  none", ""]
    t = stats["timings"]
    out += [f"Build timings (stage seconds from {t['from']}; {t['runs']} runs, {t['run_seconds']} s wall)",
            _table(["stage", "seconds", "s/sample"], [[k, v, t["stage_seconds_per_sample"][k]]
                                                      for k, v in t["stage_seconds"].items()]
                   + [["total", t["stage_seconds_total"], None]])]
    if stats["notes"]:
        out += ["", "Notes"] + [f"  ! {n}" for n in stats["notes"]]
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------------------- plots
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("shards", help="a build folder (what hm build --out wrote)")
    parser.add_argument("--json", action="store_true", help="print the numbers as one JSON object")
    parser.add_argument("--plots", metavar="DIR", help="write PNG charts and the contact sheet to DIR")
    parser.add_argument("--contact-sheet", metavar="PATH", help="write a PNG of sample frames ordered by intensity")
    parser.add_argument("--sheet-samples", type=int, default=StatsConfig.sheet_samples,
                        help="samples on the contact sheet (default %(default)s)")
    parser.add_argument("--top", type=int, default=StatsConfig.top_actions, help="action phrases listed")


def run(args: argparse.Namespace) -> int:
    cfg = StatsConfig(top_actions=args.top, sheet_samples=args.sheet_samples)
    try:
        build = load_build(args.shards)
    except FileNotFoundError as e:
        print(f"hm stats: {e}", file=sys.stderr)
        return 2
    stats = compute_stats(build, cfg)
    if args.plots or args.contact_sheet:
        from human_motion.dataset.stats_plots import write_contact_sheet, write_plots  # matplotlib: only if asked
    if args.plots:
        stats["plots"] = write_plots(build, stats, args.plots)
    sheet = args.contact_sheet or (f"{args.plots.rstrip('/')}/contact_sheet.png" if args.plots else None)
    if sheet and len(build.index):
        stats["contact_sheet"] = {"path": sheet, "keys": write_contact_sheet(build, sheet, cfg)}
    if args.json:
        print(json.dumps(stats, indent=1))
    else:
        print(format_report(stats))
        for p in stats.get("plots", []) + ([stats["contact_sheet"]["path"]] if "contact_sheet" in stats else []):
            print(f"wrote {p}")
    return 0
