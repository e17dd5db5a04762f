"""Action type and intensity controlled independently, end to end at small scale on a CPU (the paper's core claim).

    .venv/bin/python benchmarks/action_control.py [--work DIR] [--steps N]

1. ``hm build`` (in-process) of the demo source with four kinds of motion, each at 11 speeds whose build intensity
   spans 0-20 px per step (512 px, 4 fps): pans side to side, pans up and down, zooms, in-plane rotations, on two
   real face photos, plus their static portraits. Each clip's action phrase (demo option ``action_phrases``) names
   its kind, never its speed: "moving from side to side", "moving up and down", "moving back and forth", "tilting
   head". Every clip sweeps one way for 8 steps, then back (``sweep_steps``). Labels come from the build's DIS flow.
2. The small base of ``motion_recipe`` (a VAE fitted to the shard frames, a random small UNetMotionModel, tiny CLIP
   encoders with a character tokenizer).
3. ``hm train --config train_action`` three times, side by side: the full Motion Control Module (action phrase
   through the text encoder, intensity through the MLP, Eq. 8; identity branch on), and the two ablations
   ``model.intensity_scale=0`` and ``model.action_scale=0``, trained and (through the run's config) sampled the
   same way. Captions are dropped: the build's description repeats the action phrase, which would give the
   no-action ablation the action through the text.
4. Every run generates actions x intensities x seeds x both photos through ``MotionCharacterPipeline``. Each
   32x32x8 clip is measured with the build's flow code: its intensity (``measure_intensity``, Eq. 5-7, OpenCV DIS)
   and the kind of its motion (``eval.motion_kind``: the flow fitted with translation, zoom and rotation).

Reported: action accuracy on clips asked for intensity >= 5 and its confusion matrix, accuracy per asked
intensity, intensity Spearman and MAE per action and pooled, and the spread of the measured intensity across
actions at each asked intensity; the same for both ablations. The last line printed is one JSON object with the
headline figures. Pictures: ``benchmarks/action_control.gif`` (actions as rows, intensities as columns),
``action_control_frames.png`` (frames of the same grid) and ``action_control.png`` (measured against asked, and
the confusion matrices). Report in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import numpy as np

from motion_recipe import (
    NUM_FRAMES, RES, ROOT, SWEEP_STEPS, UNIT, add_arguments, build_shards, cpu_seconds, dis, generate_batch,
    id_kind_of, load_pipeline, log, measure, references, save_gif, shard_samples, start, stats, to_uint8,
    train_runs, val_loss_first_last, vae_round_trip, write_base,
)

from human_motion.eval.motion_kind import KINDS, confusion, motion_kind
from human_motion.sources.demo import ACTION_PHRASES

# The demo's motions and the kinds eval.motion_kind tells apart, in the same order.
MOTION_OF = dict(zip(KINDS, ("pan", "vertical", "zoom", "rotate")))
ACTIONS = {kind: ACTION_PHRASES[motion] for kind, motion in MOTION_OF.items()}
# Demo speeds per unit of build intensity (512-px pixels per step), measured on the demo build at 128 px: a pan of
# k px per step measures k, a zoom of 1 % per step about 2.4, a rotation of 1 degree per step about 4.
PER_INTENSITY = {"pan": 1.0, "vertical": 1.0, "zoom": 1 / 2.4, "rotate": 1 / 4.0}
MIN_KIND_PX = 1.0  # a generated clip whose components all stay below this (px per step at 512) reads "still"
VARIANTS = {"full": [], "no_intensity": ["model.intensity_scale=0"], "no_action": ["model.action_scale=0"]}


def demo_options(levels: list[float], photos: list[str]) -> dict:
    speeds = {m: [round(v * PER_INTENSITY[m], 3) for v in levels] for m in MOTION_OF.values()}
    return {"pan_px": speeds["pan"], "vertical_px": speeds["vertical"], "zoom_pct": speeds["zoom"],
            "rotate_deg": speeds["rotate"], "sweep_steps": SWEEP_STEPS, "action_phrases": True, "rejects": False,
            "photos": photos}


def kind_of(frames: np.ndarray) -> tuple[str, dict]:
    return motion_kind(frames, dis(), out_px=512, min_px=MIN_KIND_PX)


def kind_of_action(action: str) -> str | None:
    return next((k for k, phrase in ACTIONS.items() if phrase == action), None)


# -------------------------------------------------------------------------------------------------- measurement
def ceiling(shards: pathlib.Path, base: pathlib.Path, id_kind: str, id_dim: int, levels: list[float]) -> dict:
    """The training clips measured as the generated ones are (RES x NUM_FRAMES), decoded and after the VAE; their
    label stands for the asked intensity, and the nearest of ``levels`` (the build's nominal one) groups them."""
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(base / "vae").eval()
    out = {"decoded": [], "vae_round_trip": []}
    for s in shard_samples(shards, NUM_FRAMES, id_kind, id_dim):
        kind = kind_of_action(s["action"])
        if s["static"] or kind is None:
            continue
        label = float(s["intensity"]) * UNIT
        for name, frames in (("decoded", to_uint8(s["pixel_values"])),
                             ("vae_round_trip", vae_round_trip(vae, s["pixel_values"]))):
            out[name].append({"action": kind, "asked": label, "level": min(levels, key=lambda v: abs(v - label)),
                              "measured": measure(frames), "found": kind_of(frames)[0]})
    return {name: headline(summarise(rows, min_asked=5.0)) for name, rows in out.items()}


def summarise(rows: list[dict], min_asked: float = 5.0) -> dict:
    """Action accuracy (clips asked >= ``min_asked``), confusion, accuracy per asked level, intensity fidelity per
    action and pooled, and the spread of the measured intensity across actions at each asked level (a row's
    ``level``, or its ``asked`` value)."""
    moving = [r for r in rows if r["asked"] >= min_asked]
    conf = confusion([r["action"] for r in moving], [r["found"] for r in moving])
    level = {id(r): r.get("level", r["asked"]) for r in rows}
    by_level = {}
    for v in sorted(set(level.values())):
        mine = [r for r in rows if level[id(r)] == v]
        means = {k: float(np.mean([r["measured"] for r in mine if r["action"] == k]))
                 for k in KINDS if any(r["action"] == k for r in mine)}
        by_level[f"{v:g}"] = {"accuracy": float(np.mean([r["found"] == r["action"] for r in mine])),
                              "measured_mean_by_action": means,
                              "spread_across_actions": float(max(means.values()) - min(means.values()))}
    per_action = {k: stats([r["asked"] for r in rows if r["action"] == k],
                           [r["measured"] for r in rows if r["action"] == k]) for k in KINDS}
    pooled = stats([r["asked"] for r in rows], [r["measured"] for r in rows])
    return {"n": len(rows), "action_accuracy": conf["accuracy"], "confusion": conf, "by_level": by_level,
            "intensity_pooled": pooled, "intensity_by_action": per_action,
            "spread_across_actions_mean": float(np.mean([b["spread_across_actions"] for b in by_level.values()]))}


def headline(summary: dict) -> dict:
    per_action = summary["intensity_by_action"].values()
    return {"action_accuracy": round(summary["action_accuracy"], 3),
            "intensity_spearman_pooled": round(summary["intensity_pooled"]["spearman"], 3),
            "intensity_spearman_min_action": round(min(s["spearman"] for s in per_action), 3),
            "intensity_mae": round(summary["intensity_pooled"]["mae"], 2),
            "intensity_spread_across_actions": round(summary["spread_across_actions_mean"], 2)}


# --------------------------------------------------------------------------------------------------- generation
def sweep(run: pathlib.Path, refs: dict[str, np.ndarray], intensities: list[float], seeds: list[int], steps: int,
          guidance: float, save_dir: pathlib.Path) -> tuple[list[dict], dict]:
    """Every (photo, action, intensity, seed) once: rows of asked and measured, and the clips by key. The actions x
    intensities of one photo and seed are one batch with the same initial noise in each video (one generator per
    video, all seeded alike), so within it only the asked action and intensity differ."""
    pipe = load_pipeline(run)
    faces = {photo: pipe.prepare_reference(ref) for photo, ref in refs.items()}  # found and embedded once
    save_dir.mkdir(parents=True, exist_ok=True)
    asks = [(kind, float(v)) for kind in ACTIONS for v in intensities]
    rows, clips = [], {}
    for photo, face in faces.items():
        for seed in seeds:
            videos = generate_batch(pipe, face, [ACTIONS[k] for k, _ in asks], [v for _, v in asks], seed, steps,
                                    guidance)
            for (kind, intensity), frames in zip(asks, videos):
                found, components = kind_of(frames)
                rows.append({"photo": photo, "action": kind, "asked": intensity, "seed": seed,
                             "measured": measure(frames), "found": found, "components": components})
                clips[(photo, kind, intensity, seed)] = frames
                save_gif(frames, save_dir / f"{photo}_{kind}_i{intensity:g}_s{seed}.gif")
    return rows, clips


# ------------------------------------------------------------------------------------------------------- main
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_arguments(p, "action_control", "three models", steps=1000, vae_steps=400)
    p.add_argument("--levels", default="0,2,4,6,8,10,12,14,16,18,20",
                   help="build intensities of the training clips of each kind (px per step at 512 px)")
    p.add_argument("--intensities", default="0,5,10,15,20", help="asked, in px per step at 512 px")
    p.add_argument("--seeds", default="0,1", help="sampling seeds")
    p.add_argument("--photos", default="astronaut,hopper", help="photos of the build and of the sweep")
    p.add_argument("--guidance", type=float, default=2.0)
    p.add_argument("--pictures", default=str(ROOT / "benchmarks" / "action_control"),
                   help="prefix of the pictures: PREFIX.png, PREFIX.gif, PREFIX_frames.png")
    args = p.parse_args(argv)
    work = start(args)
    t_start = time.time()
    timings = {}
    load = [os.getloadavg()[0]]

    t0 = time.time()
    levels = [float(v) for v in args.levels.split(",")]
    photos = args.photos.split(",")
    shards = build_shards(work, demo_options(levels, photos), args.threads)
    timings["build_s"] = time.time() - t0
    id_kind, id_dim = id_kind_of(shards)
    t0 = time.time()
    base = write_base(work, shards, args.vae_steps, args.seed, id_kind, id_dim)
    timings["base_s"] = time.time() - t0
    t0 = time.time()
    ceil = ceiling(shards, base, id_kind, id_dim, levels)
    timings["ceiling_s"] = time.time() - t0
    log(f"ceiling: {ceil}")

    t0 = time.time()
    runs = train_runs(work, VARIANTS, shards, base, "train_action", args.steps, args.threads, id_kind, id_dim,
                      [f"train.seed={args.seed}", *args.train_set])
    timings["train_all_s"] = time.time() - t0

    refs = references(work, photos)
    intensities = [float(v) for v in args.intensities.split(",")]
    seeds = [int(v) for v in args.seeds.split(",")]
    results = {"resolution": RES, "num_frames": NUM_FRAMES, "actions": ACTIONS, "intensities": intensities,
               "seeds": seeds, "photos": list(refs), "train_steps": args.steps, "vae_steps": args.vae_steps,
               "sample_steps": args.sample_steps, "guidance_scale": args.guidance, "ceiling": ceil, "models": {}}
    clips = {}
    for name, run in runs.items():
        t0 = time.time()
        rows, clips[name] = sweep(run, refs, intensities, seeds, args.sample_steps, args.guidance,
                                  work / "samples" / name)
        timings[f"sweep_{name}_s"] = time.time() - t0
        summary = summarise(rows)
        results["models"][name] = {"headline": headline(summary), **summary, "val_loss_first_last":
                                   val_loss_first_last(run), "rows": rows}
        log(f"{name}: {headline(summary)}")
        load.append(os.getloadavg()[0])
    timings["total_s"] = time.time() - t_start
    timings["cpu_s"] = cpu_seconds()
    results["load_average_1min"] = load
    results["timings_s"] = {k: round(v, 1) for k, v in timings.items()}
    (work / "results.json").write_text(json.dumps(results, indent=2))

    from action_control_plots import grid_pictures, plot

    prefix = pathlib.Path(args.pictures)
    plot(results, prefix.with_suffix(".png"))
    grid_pictures(clips["full"], refs, ACTIONS, intensities, seeds[0], prefix)
    line = {**results["models"]["full"]["headline"],
            "without_intensity_branch": results["models"]["no_intensity"]["headline"],
            "without_action_branch": results["models"]["no_action"]["headline"],
            "chance_accuracy": round(1 / len(KINDS), 3), "ceiling": ceil["vae_round_trip"],
            "minutes": round(timings["total_s"] / 60, 1), "cpu_minutes": round(timings["cpu_s"] / 60, 1)}
    print(json.dumps(line))
    return 0


if __name__ == "__main__":
    sys.exit(main())
