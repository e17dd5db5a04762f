"""Intensity control end to end at small scale, on a CPU: does the number move the face?

    .venv/bin/python benchmarks/intensity_control.py [--work DIR] [--steps 1000]

1. ``hm build`` (in-process) of the demo source: two real face photos (NASA's astronaut, Grace Hopper) panned at
   0, 2, ..., 20 px per step (at 512 px, 4 fps), 4 windows each, plus their static portraits: 88 clips whose
   motion is known and spread over [0, 20], labelled by the build's own DIS flow. Every window is the same sweep,
   8 steps right then 8 left (``pan_sweep_steps``), so only the speed varies. Stored at 128 px (decoding 512-px
   clips was two thirds of a training step); labels are then in 128-px units, a quarter of the 512-px ones.
2. A small base made for the purpose: a 32 -> 16 px, 4-channel ``AutoencoderKL`` fitted to the shard frames for a
   few minutes (a random VAE does not reconstruct, so nothing could be measured on its output), a random small
   UNetMotionModel, a tiny random CLIP text/image encoder and a character tokenizer, saved as a local diffusers-style
   folder that ``model.pretrained_model_name_or_path`` points to.
3. ``hm train`` twice from scratch, side by side with one thread each, with
   ``human_motion/configs/train_intensity.yaml`` (whole UNet + adapter, ``model.train_unet``): with the Motion
   Control Module, and the paper's Table 3 ablation without it (``model.intensity_scale=0``, in training and, through
   the run's config, in sampling: the intensity tokens never reach the UNet). The recipe rescales the noise schedule
   to zero terminal SNR with v-prediction: with the plain schedule the initial noise, not the number, set how much
   a clip moved (benchmarks/README.md). Both runs drop every caption and switch the action branch off
   (``model.action_scale=0``), because the demo captions say "moving from side to side" for the fast pans: the
   intensity number is the only motion signal either model gets.
4. A sweep of intensities x seeds x both photos through ``MotionCharacterPipeline`` (``hm generate``'s pipeline),
   each generated 32x32x8 clip measured with the build's flow code (``measure_intensity``, OpenCV DIS at 32 px,
   magnitudes scaled to 512-px pixels per step like the paper's labels); Spearman and MAE against the asked
   intensity, per guidance scale, and a plot of the first.

Everything is offline (the photos ship with scikit-image and matplotlib) and seeded. Results go to
``<work>/results.json``, the plot to ``benchmarks/intensity_control.png``; report in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import numpy as np
import torch

from motion_recipe import (
    NUM_FRAMES, RES, ROOT, SWEEP_STEPS, UNIT, add_arguments, build_shards, id_kind_of, load_pipeline, log, measure,
    references, save_gif, shard_samples, start, stats, to_uint8, train_runs, val_loss_first_last, vae_round_trip,
    write_base,
)


def ceiling(shards: pathlib.Path, base: pathlib.Path, id_kind: str, id_dim: int) -> dict:
    """What the measurement can see: training clips measured at RES, as decoded and after the VAE round trip."""
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(base / "vae").eval()
    labels, clean, recon = [], [], []
    for s in shard_samples(shards, NUM_FRAMES, id_kind, id_dim):
        if s["static"]:
            continue
        labels.append(float(s["intensity"]) * UNIT)
        clean.append(measure(to_uint8(s["pixel_values"])))
        recon.append(measure(vae_round_trip(vae, s["pixel_values"])))
    labels, clean, recon = map(np.array, (labels, clean, recon))
    return {"n": len(labels), "decoded": stats(labels, clean), "vae_round_trip": stats(labels, recon)}


def per_path_spearman(rows: list[dict]) -> float:
    """Mean Spearman over the sweeps that share a photo and a seed (one initial noise, intensity alone varies)."""
    paths = sorted({(r["photo"], r["seed"]) for r in rows})
    values = []
    for path in paths:
        mine = [r for r in rows if (r["photo"], r["seed"]) == path]
        values.append(stats([r["asked"] for r in mine], [r["measured"] for r in mine])["spearman"])
    return float(np.mean(values))


# -------------------------------------------------------------------------------------------------- 4. generation
def sweep(run: pathlib.Path, references: dict[str, np.ndarray], intensities: list[float], seeds: list[int],
          steps: int, guidances: list[float], save_dir: pathlib.Path) -> dict[float, list[dict]]:
    from human_motion.model.pipeline_output import frames_to_uint8

    pipe = load_pipeline(run)
    faces = {photo: pipe.prepare_reference(ref) for photo, ref in references.items()}  # found and embedded once
    save_dir.mkdir(parents=True, exist_ok=True)
    out_rows = {}
    for g in guidances:
        rows = out_rows[g] = []
        for photo, face in faces.items():
            for intensity in intensities:
                for seed in seeds:
                    out = pipe(reference_face=face, prompt="", action="", intensity=float(intensity) / UNIT,
                               num_frames=NUM_FRAMES, height=RES, width=RES, num_inference_steps=steps,
                               guidance_scale=g, generator=torch.Generator().manual_seed(seed), output_type="np")
                    frames = frames_to_uint8(out.frames[0])
                    rows.append({"photo": photo, "asked": float(intensity), "seed": seed,
                                 "measured": measure(frames)})
                    save_gif(frames, save_dir / f"{photo}_i{intensity:g}_s{seed}_g{g:g}.gif")
    return out_rows


def plot(results: dict, path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    lim = max(results["intensities"]) * 1.15
    ax.plot([0, lim], [0, lim], color="0.7", lw=1, label="measured = asked")
    for name, color, offset in (("with_module", "tab:blue", -0.3), ("without_module", "tab:red", 0.3)):
        rows = results[name]["rows"]
        asked = np.array([r["asked"] for r in rows])
        meas = np.array([r["measured"] for r in rows])
        s = results[name]["stats"]
        ax.scatter(asked + offset, meas, s=14, alpha=0.6, color=color,
                   label=f"{name.replace('_', ' ')}: Spearman {s['spearman']:.2f}, MAE {s['mae']:.1f}")
        levels = sorted(set(asked))
        ax.plot(levels, [meas[asked == v].mean() for v in levels], color=color, lw=1.5)
    ax.set_xlabel("asked intensity (px per step at 512 px, 4 fps)")
    ax.set_ylabel("measured intensity of the generated clip (DIS)")
    ax.set_title(f"Intensity control, {RES}x{RES}x{NUM_FRAMES}, trained from scratch on CPU")
    ax.legend(fontsize=8, loc="upper left")
    ax.set_xlim(-1, lim)
    ax.set_ylim(bottom=-1)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


# ------------------------------------------------------------------------------------------------------- main
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_arguments(p, "intensity_control", "two models", steps=1000)
    p.add_argument("--beta-start", type=float, default=0.00085, help="linear noise schedule of the base's scheduler")
    p.add_argument("--beta-end", type=float, default=0.012)
    p.add_argument("--speeds", default="0,2,4,6,8,10,12,14,16,18,20",
                   help="pan speeds of the training clips (px per step at 512 px)")
    p.add_argument("--windows", type=int, default=4, help="4-second windows per training clip")
    p.add_argument("--intensities", default="0,5,10,15,20", help="asked, in px per step at 512 px")
    p.add_argument("--seeds", default="0,1,2,3")
    p.add_argument("--photos", default="astronaut,hopper", help="reference photos of the sweep")
    p.add_argument("--guidance", default="2.0,1.0", help="classifier-free guidance scales; the first is plotted")
    p.add_argument("--plot", default=str(ROOT / "benchmarks" / "intensity_control.png"))
    args = p.parse_args(argv)
    work = start(args)
    t_start = time.time()
    timings = {}

    t0 = time.time()
    demo = {"pan_px": [int(v) for v in args.speeds.split(",")], "windows": args.windows, "zoom_pct": 0,
            "rotate_deg": 0, "rejects": False, "pan_sweep_steps": SWEEP_STEPS, "photos": ["astronaut", "hopper"]}
    shards = build_shards(work, demo, args.threads)
    timings["build_s"] = time.time() - t0
    id_kind, id_dim = id_kind_of(shards)

    t0 = time.time()
    base = write_base(work, shards, args.vae_steps, args.seed, id_kind, id_dim, args.beta_start, args.beta_end)
    timings["base_s"] = time.time() - t0
    t0 = time.time()
    ceil = ceiling(shards, base, id_kind, id_dim)
    timings["ceiling_s"] = time.time() - t0
    log(f"ceiling: {ceil}")

    t0 = time.time()
    variants = {"with_module": [], "without_module": ["model.intensity_scale=0"]}
    runs = train_runs(work, variants, shards, base, "train_intensity", args.steps, args.threads, id_kind, id_dim,
                      [f"train.seed={args.seed}", *args.train_set])
    timings["train_both_s"] = time.time() - t0

    refs = references(work, args.photos.split(","))
    intensities = [float(v) for v in args.intensities.split(",")]
    seeds = [int(v) for v in args.seeds.split(",")]
    guidances = [float(v) for v in args.guidance.split(",")]
    results = {"resolution": RES, "num_frames": NUM_FRAMES, "intensities": intensities, "seeds": seeds,
               "photos": list(refs), "train_steps": args.steps, "vae_steps": args.vae_steps,
               "sample_steps": args.sample_steps, "guidance_scales": guidances, "ceiling": ceil}
    for name, run in runs.items():
        t0 = time.time()
        by_guidance = sweep(run, refs, intensities, seeds, args.sample_steps, guidances, work / "samples" / name)
        timings[f"sweep_{name}_s"] = time.time() - t0
        for g, rows in by_guidance.items():  # the first scale is the headline (plot), the others a sensitivity check
            asked = np.array([r["asked"] for r in rows])
            meas = np.array([r["measured"] for r in rows])
            per_level = {f"{v:g}": [float(meas[asked == v].mean()), float(meas[asked == v].std())]
                         for v in intensities}
            entry = {"guidance_scale": g, "stats": {**stats(asked, meas), "per_seed_spearman": per_path_spearman(rows)},
                     "per_level_mean_std": per_level, "rows": rows}
            log(f"{name} guidance {g:g}: {entry['stats']} per level {per_level}")
            if g == guidances[0]:
                results[name] = {**entry, "val_loss_first_last": val_loss_first_last(run), "other": []}
            else:
                results[name]["other"].append({k: v for k, v in entry.items() if k != "rows"})
    timings["total_s"] = time.time() - t_start
    results["timings_s"] = {k: round(v, 1) for k, v in timings.items()}
    (work / "results.json").write_text(json.dumps(results, indent=2))
    plot(results, pathlib.Path(args.plot))
    summary = {k: [results[k]["stats"], results[k]["other"]] for k in ("with_module", "without_module")}
    print(json.dumps({"summary": summary, "ceiling": ceil, "timings_s": results["timings_s"]}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
