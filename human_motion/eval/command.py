"""``hm eval``: score generated videos with the paper's Table 1 metrics and intensity fidelity.

    hm eval videos/ --refs refs/ --prompts prompts.jsonl --out results/
    hm eval --protocol --checkpoint runs/x --refs unsplash50/ --prompts prompts.txt --actions smiling,nodding \
            --intensities 0,5,10,20 --seeds 0 --out results/

Writes ``results.json`` (set-level values, intensity fidelity, backends, what was not reported and why),
``per_video.jsonl``, ``table.md`` (laid out like Table 1, the paper's values alongside) and
``intensity_fidelity.png``. The metrics live in ``human_motion/eval/``; docs/eval.md defines each one.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import time

from human_motion.config import ConfigError, load_config, resolve_config_path, to_dict
from human_motion.devices import auto_device
from human_motion.eval.config import EvalConfig
from human_motion.eval.inputs import EvalItem, load_reference, read_eval_set, read_video
from human_motion.eval.report import aggregate, write_outputs
from human_motion.media import MediaError


def add_arguments(parser) -> None:
    parser.add_argument("videos", nargs="?", help="folder of generated videos (not with --protocol)")
    parser.add_argument("--refs", help="folder of reference images (the rows' \"ref\" are relative to it)")
    parser.add_argument("--prompts", required=True,
                        help="prompts.jsonl (video, ref, prompt, action, intensity); with --protocol a prompts.txt")
    parser.add_argument("--out", default="results", help="output folder (default: results)")
    parser.add_argument("--config", default="eval", help="config file or packaged name (default: eval)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    g = parser.add_argument_group("--protocol: generate the set from a checkpoint, then score it")
    g.add_argument("--protocol", action="store_true", help="generate the evaluation set first (docs/eval.md)")
    g.add_argument("--checkpoint", help="a folder saved by `hm train`")
    g.add_argument("--actions", default="", help="comma-separated action phrases")
    g.add_argument("--intensities", default="0,5,10,20", help="comma-separated asked intensities (default 0,5,10,20)")
    g.add_argument("--seeds", default="0", help="comma-separated seeds (default 0)")


def _numbers(text: str, kind, flag: str) -> list:
    try:
        values = [kind(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"{flag} must be comma-separated numbers, got {text!r}") from None
    if not values:
        raise ConfigError(f"{flag} is empty")
    return values


def run(args) -> int:
    cfg = load_config(EvalConfig, resolve_config_path(args.config), args.set)
    out = pathlib.Path(args.out)
    if args.protocol:
        from human_motion.eval import protocol

        if not args.checkpoint or not args.refs:
            raise ConfigError("--protocol needs --checkpoint and --refs")
        if args.videos:
            raise ConfigError("--protocol writes its videos to OUT/videos; do not give a videos folder")
        jobs = protocol.plan_jobs(
            protocol.list_refs(args.refs), protocol.read_prompts_txt(args.prompts),
            [a.strip() for a in args.actions.split(",") if a.strip()],
            _numbers(args.intensities, float, "--intensities"), _numbers(args.seeds, int, "--seeds"),
            cfg.protocol.pairing)
        pipe = protocol.load_pipeline(args.checkpoint, auto_device(cfg.protocol.device))
        prompts_jsonl = protocol.generate_set(pipe, jobs, args.refs, out, cfg.protocol)
        videos_dir = out / "videos"
    else:
        if not args.videos:
            raise ConfigError("give the folder of videos to score (or --protocol to generate them)")
        prompts_jsonl, videos_dir = pathlib.Path(args.prompts), pathlib.Path(args.videos)
    items, unlisted = read_eval_set(prompts_jsonl, videos_dir, args.refs)
    summary = evaluate(cfg, items, out, unlisted=unlisted)
    print(json.dumps({k: summary[k] for k in ("videos_scored", "aggregate", "intensity_fidelity")}, indent=1))
    print(f"wrote {out / 'table.md'}")
    return 0


@dataclasses.dataclass
class Scorers:
    """The models of one run; each None when its metric is not computed (``not_reported`` says why)."""

    face: object | None = None
    clip: object | None = None
    dynamic_flow: object | None = None
    interpolator: object | None = None
    dover: object | None = None
    intensity: object | None = None
    not_reported: dict = dataclasses.field(default_factory=dict)
    backends: dict = dataclasses.field(default_factory=dict)
    caveats: list = dataclasses.field(default_factory=list)  # why a value is not comparable with the paper's


def make_scorers(cfg: EvalConfig) -> Scorers:
    """Load each requested metric's model once; metrics without weights are recorded as not reported. A model that
    was asked for but cannot be loaded (missing package or file) stops the run with one line."""
    try:
        return _make_scorers(cfg)
    except (ImportError, FileNotFoundError) as e:
        raise ConfigError(f"{type(e).__name__}: {e}") from None


def _make_scorers(cfg: EvalConfig) -> Scorers:
    s = Scorers()
    want = set(cfg.metrics)
    for key in ("face_similarity", "dynamic_degree", "motion_smoothness", "dover"):
        if key not in want:
            s.not_reported[key] = "not requested (metrics)"
    if "clip" not in want:
        s.not_reported["clip_i"] = s.not_reported["clip_t"] = "not requested (metrics)"
    if "face_similarity" in want:
        from human_motion.eval.face_similarity import FaceSimilarity

        s.face = FaceSimilarity(cfg.face)
        s.backends["face_similarity"] = s.face.name
        if s.face.embedder.kind != "arcface":
            s.caveats.append(f"Face Similarity uses {s.face.embedder.kind} embeddings, not ArcFace as the paper: "
                             "same-person cosines run higher; compare only with runs of the same embedder "
                             "(face.embedder=insightface for the paper's).")
    if "clip" in want:
        from human_motion.eval.clip_scores import ClipScorer

        s.clip = ClipScorer(cfg.clip.model, auto_device(cfg.clip.device), cfg.clip.batch_size)
        s.backends["clip"] = s.clip.name
        s.caveats.append("CLIP-I/CLIP-T: the paper does not name its CLIP model; values depend on it.")
    if "dynamic_degree" in want:
        from human_motion.eval.vbench import make_dynamic_degree_flow

        s.dynamic_flow = make_dynamic_degree_flow(cfg.dynamic_degree, auto_device(cfg.dynamic_degree.device))
        s.backends["dynamic_degree"] = getattr(s.dynamic_flow, "name", cfg.dynamic_degree.backend)
        if cfg.dynamic_degree.backend == "dis":
            s.backends["dynamic_degree"] += " (NOT VBench's RAFT: not comparable with published values)"
            s.caveats.append("Dynamic Degree ran on OpenCV DIS flow, not VBench's RAFT.")
        elif cfg.dynamic_degree.backend != "raft_large" or cfg.dynamic_degree.raft_iters != 20:
            s.caveats.append("Dynamic Degree: VBench runs RAFT-large (raft-things) with 20 iterations.")
    if "motion_smoothness" in want:
        if cfg.smoothness.amt_weights:
            from human_motion.eval.vbench import AmtInterpolator

            s.interpolator = AmtInterpolator(cfg.smoothness.amt_config, cfg.smoothness.amt_weights,
                                             auto_device(cfg.smoothness.device))
            s.backends["motion_smoothness"] = s.interpolator.name
        else:
            s.not_reported["motion_smoothness"] = "needs AMT-S weights: smoothness.amt_config and amt_weights"
    if "dover" in want:
        if cfg.dover.weights:
            from human_motion.eval.dover import DoverScorer

            s.dover = DoverScorer(cfg.dover.config, cfg.dover.weights, auto_device(cfg.dover.device))
            s.backends["dover"] = s.dover.name
        else:
            s.not_reported["dover"] = "needs DOVER weights: dover.config and dover.weights"
    if "intensity_fidelity" in want:
        from human_motion.eval.intensity_fidelity import IntensityMeter

        s.intensity = IntensityMeter(cfg.intensity, auto_device(cfg.intensity.device))
        s.backends["intensity"] = s.intensity.units["backend"]
    return s


def _score_item(item: EvalItem, s: Scorers, refs: dict) -> dict:
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
        rows.append(_score_item(item, s, refs))
        print(f"[{i + 1}/{len(items)}] {item.video}", flush=True)
    summary = {
        "videos_listed": len(items),
        "videos_scored": sum("video" not in r["errors"] for r in rows),
        "aggregate": aggregate(rows, s.not_reported),
        "not_reported": s.not_reported,
        "backends": s.backends,
        "caveats": s.caveats,
        "intensity_fidelity": None,
        "unlisted": list(unlisted),
        "config": to_dict(cfg),
    }
    if s.intensity is not None:
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
        fid["units"] = s.intensity.units
        if pairs:
            plot_fidelity([a for a, _ in pairs], [m for _, m in pairs], out / "intensity_fidelity.png",
                          f"intensity fidelity (n={len(pairs)}, {s.intensity.units['backend'].split()[0]})")
            fid["plot"] = "intensity_fidelity.png"
        summary["intensity_fidelity"] = fid
    write_outputs(summary, rows, out)
    return summary
