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
import os
import pathlib
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import torch  # noqa: E402

RES = 32  # generated and trained frame side
NUM_FRAMES = 8  # the first 8 of the 16 stored frames, 4 fps kept (frame_stride 1): labels keep their meaning
OUT_PX = 512  # everything is reported in pixels per step at 512 px and 4 fps (the paper's units, 0..20)
# The shards are stored at 128 px (decode.size_px, flow.work_px): decoding a 512-px clip costs ~0.17 s, which made
# data loading ~2/3 of a training step. Their labels (and so the model's intensity input) are in 128-px pixels per
# step, a quarter of the 512-px number: asked intensities are divided by UNIT before the pipeline, labels multiplied.
STORE_PX = 128
UNIT = OUT_PX / STORE_PX
# Every pan starts at its left end and sweeps right for 8 steps, then back (demo option pan_sweep_steps): the first 8
# frames of every window, what the model trains on, are the same rightward sweep whatever the speed. Only the speed
# varies, so the model learns the number rather than a spread of directions and phases (the default bouncing pans
# start each window at another phase).
SWEEP_STEPS = 8


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def hm(*args: str, threads: int, log_file: pathlib.Path | None = None, wait: bool = True):
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "GLOG_minloglevel": "2", "TF_CPP_MIN_LOG_LEVEL": "2"}
    cmd = [sys.executable, "-m", "human_motion.cli", *args]
    log("$ hm " + " ".join(args))
    out = open(log_file, "w") if log_file else None
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT if out else None)
    if wait and proc.wait():
        raise subprocess.CalledProcessError(proc.returncode, cmd)
    return proc


# ---------------------------------------------------------------------------------------------------- 1. the data
def build_shards(work: pathlib.Path, speeds: list[int], windows: int, threads: int) -> pathlib.Path:
    shards = work / "shards"
    if (shards / "_build.json").exists() and list(shards.glob("*.tar")):
        log(f"reusing {shards}")
        return shards
    hm("build", "--out", str(shards), "--set", "ray.address=local", "--set", f"decode.size_px={STORE_PX}",
       "--set", f"flow.work_px={STORE_PX}",
       "--set", f"sources.demo.options.pan_px=[{','.join(str(s) for s in speeds)}]",
       "--set", f"sources.demo.options.windows={windows}", "--set", "sources.demo.options.zoom_pct=0",
       "--set", "sources.demo.options.rotate_deg=0", "--set", "sources.demo.options.rejects=false",
       "--set", f"sources.demo.options.pan_sweep_steps={SWEEP_STEPS}",
       "--set", "sources.demo.options.photos=[astronaut,hopper]", threads=threads)
    return shards


def shard_samples(shards: pathlib.Path, num_frames: int, id_kind: str, id_dim: int, flip: float = 0.0):
    """Every sample of the shards once, decoded at RES by the training data code."""
    from human_motion.model.config import DataConfig, ModelConfig
    from human_motion.model.data import get_dataset

    cfg = DataConfig(resolution=RES, num_frames=num_frames, frame_stride=1, flip_prob=flip, face_size=RES,
                     shuffle_buffer=1, text_drop_prob=0.0, image_drop_prob=0.0, clip_drop_prob=0.0)
    model = ModelConfig(pretrained_model_name_or_path="tiny", id_embedding_kind=id_kind, id_embedding_dim=id_dim)
    seen = set()
    for _, s in get_dataset(cfg, model, str(shards), seed=0).samples(0):
        if s is None:
            continue
        if s["key"] in seen:
            return
        seen.add(s["key"])
        yield s


def id_kind_of(shards: pathlib.Path) -> tuple[str, int]:
    import tarfile

    with tarfile.open(sorted(shards.glob("*.tar"))[0]) as tar:
        for m in tar:
            if m.name.endswith(".json"):
                kind = json.load(tar.extractfile(m))["id_embedding"]["kind"]
                return kind, {"arcface": 512, "dlib": 128}[kind]
    raise RuntimeError(f"no samples in {shards}")


def to_uint8(frames: torch.Tensor) -> np.ndarray:
    """(f, 3, H, W) in [-1, 1] -> (f, H, W, 3) uint8."""
    return ((frames.permute(0, 2, 3, 1).float().numpy() + 1) * 127.5).round().clip(0, 255).astype(np.uint8)


def measure(frames_uint8: np.ndarray) -> float:
    """The build's intensity (Eq. 5-7, OpenCV DIS) at the clip's own size, in 512-px pixels per step."""
    from human_motion.backends.optical_flow import OpenCVFlow, measure_intensity

    return float(measure_intensity(frames_uint8, OpenCVFlow("dis"), frames_uint8.shape[1], OUT_PX)[0])


# ------------------------------------------------------------------------------------------------- 2. the base model
def train_vae(frames: torch.Tensor, steps: int, seed: int):
    """A 32 -> 16 px, 4-channel AutoencoderKL fitted to the shard frames (N, 3, 32, 32) in [-1, 1]."""
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(32, 64), layers_per_block=1,
                        latent_channels=4, norm_num_groups=16, sample_size=RES, mid_block_add_attention=False)
    opt = torch.optim.AdamW(vae.parameters(), lr=2e-3, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps, pct_start=0.1)
    gen = torch.Generator().manual_seed(seed)
    vae.train()
    for step in range(steps):
        idx = torch.randint(0, len(frames), (32,), generator=gen)
        x = frames[idx]
        flip = torch.rand(len(x), generator=gen) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        post = vae.encode(x).latent_dist
        z = post.mean + post.std * torch.randn(post.mean.shape, generator=gen)
        rec = vae.decode(z).sample
        loss = (rec - x).abs().mean() + 1e-6 * post.kl().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 100 == 0 or step == steps - 1:
            log(f"vae step {step} l1 {loss.item():.4f}")
    vae.eval()
    with torch.no_grad():
        z = torch.cat([vae.encode(frames[i:i + 256]).latent_dist.mean for i in range(0, len(frames), 256)])
    vae.register_to_config(scaling_factor=float(1.0 / z.std()))  # unit-variance latents, as SD's 0.18215 does
    return vae


def write_base(work: pathlib.Path, shards: pathlib.Path, vae_steps: int, seed: int, id_kind: str,
               id_dim: int, beta_start: float = 0.00085, beta_end: float = 0.012) -> pathlib.Path:
    """A local diffusers-style base: unet/ vae/ text_encoder/ tokenizer/ scheduler/, plus motion_adapter/ and
    image_encoder/ folders (the places model.motion_adapter and model.image_encoder point to)."""
    from diffusers import DDIMScheduler, MotionAdapter, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPVisionConfig, CLIPVisionModelWithProjection

    from human_motion.model import tiny

    base = work / "base"
    if (base / "done").exists():
        log(f"reusing {base}")
        return base
    if not (base / "vae" / "config.json").exists():
        frames = torch.cat([s["pixel_values"] for s in shard_samples(shards, 16, id_kind, id_dim)])
        log(f"vae: {len(frames)} frames at {RES} px")
        t0 = time.time()
        vae = train_vae(frames, vae_steps, seed)
        log(f"vae trained in {time.time() - t0:.0f} s, scaling_factor {vae.config.scaling_factor:.3f}")
        vae.save_pretrained(base / "vae")
    torch.manual_seed(seed)
    # Attention (self and cross, where the adapter's processors sit) only at the 8x8 level and the mid block, one head
    # per 32 channels: on a CPU, many tiny heads at 16x16 cost 3x more per step for no gain at this size.
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=RES // 2, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=tiny.TINY_TEXT_WIDTH, attention_head_dim=(1, 2), norm_num_groups=8,
    )
    unet.save_pretrained(base / "unet")
    MotionAdapter(block_out_channels=(32, 64), motion_layers_per_block=1, motion_num_attention_heads=2,
                  motion_norm_num_groups=8, motion_max_seq_length=32).save_pretrained(base / "motion_adapter")
    tokenizer = tiny.write_tiny_tokenizer(base / "tokenizer")
    CLIPTextModel(CLIPTextConfig(**tiny.tiny_text_config(len(tokenizer)))).save_pretrained(base / "text_encoder")
    CLIPVisionModelWithProjection(CLIPVisionConfig(**tiny.tiny_vision_config())).save_pretrained(
        base / "image_encoder")
    # AnimateDiff's linear 0.00085 .. 0.012 by default. DDPM's 1e-4 .. 0.02 (made for 32-px images: less of the clip
    # survives at t = 999) was tried (--beta-start 1e-4 --beta-end 0.02) and made the samples noisier.
    DDIMScheduler(num_train_timesteps=1000, beta_start=beta_start, beta_end=beta_end, beta_schedule="linear",
                  clip_sample=False).save_pretrained(base / "scheduler")
    (base / "done").write_text("ok\n")
    return base


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
        with torch.no_grad():
            rec = vae.decode(vae.encode(s["pixel_values"]).latent_dist.mean).sample.clamp(-1, 1)
        recon.append(measure(to_uint8(rec)))
    labels, clean, recon = map(np.array, (labels, clean, recon))
    return {"n": len(labels), "decoded": stats(labels, clean), "vae_round_trip": stats(labels, recon)}


def stats(asked: np.ndarray, measured: np.ndarray) -> dict:
    from scipy.stats import spearmanr

    return {"spearman": float(spearmanr(asked, measured)[0]), "mae": float(np.abs(asked - measured).mean())}


def per_path_spearman(rows: list[dict]) -> float:
    """Mean Spearman over the sweeps that share a photo and a seed (one initial noise, intensity alone varies)."""
    from scipy.stats import spearmanr

    paths = sorted({(r["photo"], r["seed"]) for r in rows})
    values = []
    for path in paths:
        mine = [r for r in rows if (r["photo"], r["seed"]) == path]
        measured = [r["measured"] for r in mine]
        # The same video at every asked value (the ablation) orders nothing: 0, not undefined.
        values.append(spearmanr([r["asked"] for r in mine], measured)[0] if np.ptp(measured) > 0 else 0.0)
    return float(np.mean(values))


# ---------------------------------------------------------------------------------------------------- 3. training
def train_runs(work: pathlib.Path, variants: dict[str, list[str]], shards: pathlib.Path, base: pathlib.Path,
               steps: int, threads: int, id_kind: str, id_dim: int, common: list[str]) -> dict[str, pathlib.Path]:
    """One ``hm train`` per variant, all at once, one torch thread each: on a shared 2-core CPU two single-threaded
    runs side by side finish sooner than two 2-thread runs one after the other (OpenMP threads wait on each other)."""
    runs, procs = {}, {}
    for name, extra in variants.items():
        run = runs[name] = work / name
        if (run / "adapter").is_dir() and (run / "unet").is_dir():
            log(f"reusing {run}")
            continue
        sets = [f"model.pretrained_model_name_or_path={base}", f"model.motion_adapter={base / 'motion_adapter'}",
                f"model.image_encoder={base / 'image_encoder'}", f"model.id_embedding_kind={id_kind}",
                f"model.id_embedding_dim={id_dim}", f"train.max_train_steps={steps}",
                f"train.checkpointing_steps={steps}", *common, *extra]
        args = ["train", str(shards), "--config", "train_intensity", "--out", str(run)]
        for s in sets:
            args += ["--set", s]
        procs[name] = hm(*args, threads=max(1, threads // len(variants)), log_file=work / f"{name}.log", wait=False)
    for name, proc in procs.items():
        if proc.wait():
            raise RuntimeError(f"hm train for {name} failed; see {work / f'{name}.log'}")
        log(f"{name}: trained")
    return runs


# -------------------------------------------------------------------------------------------------- 4. generation
def load_pipeline(run: pathlib.Path):
    from human_motion.model.sampling import MotionCharacterPipeline

    # What `hm generate --checkpoint RUN` loads: the base named in the run's config, its adapter/ and, for a
    # model.train_unet run like these, the whole trained UNet from unet/.
    pipe = MotionCharacterPipeline.from_pretrained(str(run))
    pipe.to("cpu")
    return pipe


def sweep(run: pathlib.Path, references: dict[str, np.ndarray], intensities: list[float], seeds: list[int],
          steps: int, guidances: list[float], save_dir: pathlib.Path) -> dict[float, list[dict]]:
    from PIL import Image

    pipe = load_pipeline(run)
    pipe.set_progress_bar_config(disable=True)
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
                               guidance_scale=g, generator=torch.Generator().manual_seed(seed))
                    frames = np.asarray(out.frames)
                    rows.append({"photo": photo, "asked": float(intensity), "seed": seed,
                                 "measured": measure(frames)})
                    images = [Image.fromarray(f).resize((4 * RES, 4 * RES), Image.NEAREST) for f in frames]
                    images[0].save(save_dir / f"{photo}_i{intensity:g}_s{seed}_g{g:g}.gif", save_all=True,
                                   append_images=images[1:], duration=250, loop=0)
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
    p.add_argument("--work", default=str(pathlib.Path(tempfile.gettempdir()) / "hm_intensity_control"),
                   help="shards, base, runs, samples, results.json; existing parts are reused")
    p.add_argument("--steps", type=int, default=1000, help="training steps of each of the two models")
    p.add_argument("--vae-steps", type=int, default=600)
    p.add_argument("--beta-start", type=float, default=0.00085, help="linear noise schedule of the base's scheduler")
    p.add_argument("--beta-end", type=float, default=0.012)
    p.add_argument("--speeds", default="0,2,4,6,8,10,12,14,16,18,20",
                   help="pan speeds of the training clips (px per step at 512 px)")
    p.add_argument("--windows", type=int, default=4, help="4-second windows per training clip")
    p.add_argument("--intensities", default="0,5,10,15,20", help="asked, in px per step at 512 px")
    p.add_argument("--seeds", default="0,1,2,3")
    p.add_argument("--photos", default="astronaut,hopper", help="reference photos of the sweep")
    p.add_argument("--sample-steps", type=int, default=25)
    p.add_argument("--guidance", default="2.0,1.0", help="classifier-free guidance scales; the first is plotted")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--plot", default=str(ROOT / "benchmarks" / "intensity_control.png"))
    p.add_argument("--train-set", action="append", default=[], help="extra --set for both training runs")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    work = pathlib.Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    t_start = time.time()
    timings = {}

    t0 = time.time()
    shards = build_shards(work, [int(v) for v in args.speeds.split(",")], args.windows, args.threads)
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
    runs = train_runs(work, variants, shards, base, args.steps, args.threads, id_kind, id_dim,
                      [f"train.seed={args.seed}", *args.train_set])
    timings["train_both_s"] = time.time() - t0

    from human_motion.sources.demo import _photos  # the same photos the build framed

    portraits = {name: work / "shards" / "_demo_media" / f"{name}_portrait.jpg" for name in _photos()}
    from PIL import Image

    references = {n: np.asarray(Image.open(portraits[n]).convert("RGB")) for n in args.photos.split(",")}
    intensities = [float(v) for v in args.intensities.split(",")]
    seeds = [int(v) for v in args.seeds.split(",")]
    guidances = [float(v) for v in args.guidance.split(",")]
    results = {"resolution": RES, "num_frames": NUM_FRAMES, "intensities": intensities, "seeds": seeds,
               "photos": list(references), "train_steps": args.steps, "vae_steps": args.vae_steps,
               "sample_steps": args.sample_steps, "guidance_scales": guidances, "ceiling": ceil}
    for name, run in runs.items():
        t0 = time.time()
        by_guidance = sweep(run, references, intensities, seeds, args.sample_steps, guidances, work / "samples" / name)
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
                lines = (run / "logs" / "train.jsonl").read_text().splitlines()
                val = [r["val_loss"] for r in map(json.loads, lines) if "val_loss" in r]
                results[name] = {**entry, "val_loss_first_last": [val[0], val[-1]] if val else None, "other": []}
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
