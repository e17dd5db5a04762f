"""Aggregation of per-video scores, and the outputs: ``results.json``, ``per_video.jsonl`` and ``table.md`` laid
out like the paper's Table 1, with the paper's values alongside."""

from __future__ import annotations

import json
import math
import pathlib

import numpy as np

# MotionCharacter, Table 1 of the paper (Unsplash-50 portraits x 140 prompts).
PAPER_TABLE1 = {"dover": 0.869, "motion_smoothness": 0.998, "dynamic_degree": 0.449, "clip_i": 0.633,
                "clip_t": 0.227, "face_similarity": 0.609}
COLUMNS = [("dover", "Dover"), ("motion_smoothness", "Motion Smoothness"), ("dynamic_degree", "Dynamic Degree"),
           ("clip_i", "CLIP-I"), ("clip_t", "CLIP-T"), ("face_similarity", "Face Similarity")]
COLUMNS_OF = {"clip": ("clip_i", "clip_t")}  # the columns a metric of the config fills, where not its own name


def _mean(values) -> dict:
    vals = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return {"value": float(np.mean(vals)) if vals else None, "n": len(vals)}


def aggregate(rows: list[dict], not_reported: dict[str, str], min_side_px: dict[str, int] | None = None) -> dict:
    """Set-level value per Table 1 metric: the mean over videos that have it (Dynamic Degree: the fraction of videos
    judged dynamic). Metrics without their weights carry ``not_reported`` and no value; a value whose inputs are
    unreliable carries ``warnings`` (see :func:`reliability_warnings`)."""
    out = {}
    for key, _ in COLUMNS:
        if key in not_reported:
            out[key] = {"value": None, "n": 0, "not_reported": not_reported[key]}
        elif key == "dynamic_degree":
            out[key] = _mean([None if r.get("dynamic") is None else float(r["dynamic"]) for r in rows])
        else:
            out[key] = _mean([r.get(key) for r in rows])
    with_face = sum(r.get("frames_with_face", 0) for r in rows)
    without = sum(r.get("frames_without_face", 0) for r in rows)
    out["face_similarity"].update(frames_with_face=with_face, frames_without_face=without)
    for key, warnings in reliability_warnings(rows, out, min_side_px or {}).items():
        out[key]["warnings"] = warnings
    return out


def reliability_warnings(rows: list[dict], agg: dict, min_side_px: dict[str, int]) -> dict[str, list[str]]:
    """Why a computed value should not sit beside the paper's as a plain number: faces found in under half of the
    frames (Face Similarity then averages a few, possibly spurious, detections), or videos smaller than the side the
    metric's model reads (its input is upsampled pixels)."""
    out: dict[str, list[str]] = {}
    face = agg["face_similarity"]
    frames = face["frames_with_face"] + face["frames_without_face"]
    if face["value"] is not None and face["frames_with_face"] < 0.5 * frames:
        out["face_similarity"] = [f"faces found in {face['frames_with_face']} of {frames} frames (under half)"]
    scored = [r for r in rows if "size" in r]
    for metric, side in min_side_px.items():
        small = sum(min(r["size"]) < side for r in scored)
        for key in COLUMNS_OF.get(metric, (metric,)):
            if small and agg[key]["value"] is not None:
                out.setdefault(key, []).append(f"{small} of {len(scored)} videos are smaller than {side} px, the "
                                               "side its model reads")
    return out


def _fmt(entry: dict) -> str:
    if entry.get("not_reported"):
        return "not reported"
    if entry["value"] is None:
        return "n/a"
    return f"{entry['value']:.3f}" + (" ⚠" if entry.get("warnings") else "")


def _status(entry: dict) -> str:
    if entry.get("not_reported"):
        return entry["not_reported"]
    if entry.get("warnings"):
        return "unreliable: " + "; ".join(entry["warnings"])
    return "ok" if entry["value"] is not None else "no video had its inputs"


def markdown_table(summary: dict) -> str:
    agg = summary["aggregate"]
    head = "| Method | " + " | ".join(f"{name} ↑" for _, name in COLUMNS) + " |"
    lines = [
        "# hm eval", "",
        head, "|" + "---|" * (len(COLUMNS) + 1),
        "| MotionCharacter (paper, Table 1) | " + " | ".join(f"{PAPER_TABLE1[k]:.3f}" for k, _ in COLUMNS) + " |",
        f"| this run ({summary['videos_scored']} videos) | " + " | ".join(_fmt(agg[k]) for k, _ in COLUMNS) + " |",
        "",
        "⚠: computed on unreliable inputs; not comparable with the paper's value (see the status column below).",
        "",
        "| Metric | this run | videos | status |", "|---|---|---|---|",
        *[f"| {name} | {_fmt(agg[k])} | {agg[k]['n']} | {_status(agg[k])} |" for k, name in COLUMNS],
        "",
        f"Face frames: {agg['face_similarity']['frames_with_face']} with a face, "
        f"{agg['face_similarity']['frames_without_face']} without (not scored).",
    ]
    lines += ["", "## Backends", ""] + [f"- {k}: {v}" for k, v in summary["backends"].items()]
    if summary.get("caveats"):
        lines += ["", "## Comparability with the paper", ""] + [f"- {c}" for c in summary["caveats"]]
    fid = summary.get("intensity_fidelity")
    skipped = summary.get("not_reported", {}).get("intensity_fidelity", "")
    if skipped.startswith("skipped"):
        lines += ["", "## Intensity fidelity", "", f"Not reported: {skipped}."]
    if fid:
        lines += ["", "## Intensity fidelity", "",
                  f"Measured with {fid['units']['backend']} at {fid['units']['resolution_px']} px "
                  f"(pixels per step); {fid['n']} videos.", ""]
        if fid["n"]:
            rho = "n/a" if fid["spearman"] is None else f"{fid['spearman']:.3f}"
            r = "n/a" if fid["pearson"] is None else f"{fid['pearson']:.3f}"
            lines += ["| Spearman ρ | Pearson r | MAE (px/step) |", "|---|---|---|",
                      f"| {rho} | {r} | {fid['mae']:.3f} |",
                      "", "| asked | videos | measured mean | measured std |", "|---|---|---|---|"]
            lines += [f"| {a} | {v['n']} | {v['mean']:.3f} | {v['std']:.3f} |" for a, v in fid["by_asked"].items()]
            wg = fid.get("within_group") or {}
            if wg.get("groups"):
                rho = "n/a" if wg["mean_spearman"] is None else f"{wg['mean_spearman']:.3f}"
                lines += ["", f"Within {wg['groups']} groups that differ only in the asked intensity (same reference, "
                          f"prompt, action, seed): mean Spearman ρ {rho}; measured mean rises strictly with the asked "
                          f"value in {100 * wg['fraction_monotone']:.0f}% of groups."]
            if fid.get("plot"):
                lines += ["", f"![measured vs asked intensity]({fid['plot']})"]
    if summary.get("unlisted"):
        lines += ["", f"Videos without a row in the prompts file (not scored): {len(summary['unlisted'])}."]
    errors = [r for r in summary.get("rows", []) if r.get("errors")]
    if errors:
        lines += ["", f"Videos with a metric error: {len(errors)} (see per_video.jsonl)."]
    return "\n".join(lines) + "\n"


def write_outputs(summary: dict, rows: list[dict], out: pathlib.Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "per_video.jsonl", "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    (out / "results.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    (out / "table.md").write_text(markdown_table({**summary, "rows": rows}), encoding="utf-8")
