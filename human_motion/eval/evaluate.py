"""Scoring a set: every metric on every video (a metric that fails on one video is recorded in its row and the
others still run), then the set's values, intensity fidelity and the outputs (``report.py``)."""

from __future__ import annotations

import json
import pathlib
import sys
import time

from human_motion.config import to_dict
from human_motion.eval.config import EvalConfig
from human_motion.eval.inputs import EvalItem, load_reference, read_video
from human_motion.eval.report import aggregate, write_outputs
from human_motion.eval.scorers import Scorers, make_scorers
from human_motion.media import MediaError


def score_item(item: EvalItem, s: Scorers, refs: dict) -> dict:
    row = {"video": item.video, "ref": item.ref_path.name if item.ref_path else None, "prompt": item.prompt,
           "action": item.action, "intensity_asked": item.intensity, **item.extra, "errors": {}}
    try:
        frames, fps = read_video(item.video_path)
    except MediaError as e:
        row["errors"]["video"] = str(e)
        return row
    row.update(frames=int(len(frames)), fps=float(fps), size=[int(frames.shape[2]), int(frames.shape[1])])
    reference = None
    if item.ref_path is not None:
        key = str(item.ref_path)
        if key not in refs:
            try:
                refs[key] = load_reference(key)
            except MediaError as e:
                refs[key] = e
        reference = None if isinstance(refs[key], MediaError) else refs[key]
        if reference is None:
            row["errors"]["ref"] = str(refs[key])
    # Each metric is independent: one that fails on this video is recorded and the others still run.
    metrics = [
        ("face_similarity", s.face is not None and reference is not None, lambda: s.face.score(reference, frames)),
        ("clip", s.clip is not None, lambda: s.clip.score(frames, reference, item.prompt)),
        ("dynamic_degree", s.dynamic_flow is not None, lambda: _dynamic(frames, fps, s.dynamic_flow)),
        ("motion_smoothness", s.interpolator is not None, lambda: _smooth(frames, s.interpolator)),
        ("dover", s.dover is not None, lambda: s.dover.score(str(item.video_path))),
        ("intensity", s.intensity is not None, lambda: {"intensity_measured": s.intensity.measure(frames)}),
    ]
    for name, wanted, fn in metrics:
        if not wanted:
            continue
        t0 = time.perf_counter()
        try:
            row.update(fn())
        except Exception as e:  # noqa: BLE001 - the per-video boundary: record, keep scoring the set
            row["errors"][name] = f"{type(e).__name__}: {e}"
        row.setdefault("seconds", {})[name] = round(time.perf_counter() - t0, 3)
    return row


def _dynamic(frames, fps, flow) -> dict:
    from human_motion.eval.vbench import dynamic_degree

    detail = dynamic_degree(frames, fps, flow)
    return {"dynamic": detail.pop("dynamic"), "dynamic_degree_detail": detail}


def _smooth(frames, interpolator) -> dict:
    from human_motion.eval.vbench import motion_smoothness

    return {"motion_smoothness": motion_smoothness(frames, interpolator)["motion_smoothness"]}


def evaluate(cfg: EvalConfig, items: list[EvalItem], out: str | pathlib.Path, scorers: Scorers | None = None,
             unlisted: list[str] = ()) -> dict:
    """Score every item, write the outputs into ``out`` and return the summary (what ``results.json`` holds)."""
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    s = scorers or make_scorers(cfg)
    refs: dict = {}
    rows = []
    for i, item in enumerate(items):
        rows.append(score_item(item, s, refs))
        print(f"[{i + 1}/{len(items)}] {item.video}", file=sys.stderr, flush=True)
    summary = {
        "videos_listed": len(items),
        "videos_scored": sum("video" not in r["errors"] for r in rows),
        "aggregate": aggregate(rows, s.not_reported, s.min_side_px),
        "not_reported": s.not_reported,
        "backends": s.backends,
        "caveats": s.caveats,
        "intensity_fidelity": None,
        "unlisted": list(unlisted),
        "config": to_dict(cfg),
    }
    if s.intensity is not None:
        summary["intensity_fidelity"] = intensity_summary(rows, s.intensity.units, out)
    write_outputs(summary, rows, out)
    return summary


def intensity_summary(rows: list[dict], units: dict, out: pathlib.Path) -> dict:
    """Measured against asked intensity over the set, within groups that differ only in the asked value, and the
    plot (``intensity_fidelity.png``)."""
    from human_motion.eval.intensity_fidelity import fidelity_stats, plot_fidelity, within_group_stats

    pairs = [(r["intensity_asked"], r["intensity_measured"]) for r in rows
             if r.get("intensity_asked") is not None and r.get("intensity_measured") is not None]
    fid = fidelity_stats([a for a, _ in pairs], [m for _, m in pairs]) if pairs else {"n": 0}
    groups: dict = {}
    for r in rows:  # the same reference, prompt, action and seed at several asked intensities
        if r.get("intensity_asked") is not None and r.get("intensity_measured") is not None:
            key = json.dumps([r.get("ref"), r.get("prompt"), r.get("action"), r.get("seed")])
            groups.setdefault(key, []).append((r["intensity_asked"], r["intensity_measured"]))
    fid["within_group"] = within_group_stats(groups)
    fid["units"] = units
    if pairs:
        plot_fidelity([a for a, _ in pairs], [m for _, m in pairs], out / "intensity_fidelity.png",
                      f"intensity fidelity (n={len(pairs)}, {units['backend'].split()[0]})")
        fid["plot"] = "intensity_fidelity.png"
    return fid
