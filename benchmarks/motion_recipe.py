"""The small-scale recipe shared by ``intensity_control.py`` and ``action_control.py``: a demo build stored at
128 px, a small base fitted for the purpose, ``hm train`` runs side by side, generation through
``MotionCharacterPipeline`` and measurement with the build's own flow code.

Sizes: clips are generated and trained at RES x RES x NUM_FRAMES; every intensity is reported in pixels per step at
512 px and 4 fps (the paper's units). The shards are stored at 128 px (``decode.size_px``, ``flow.work_px``): decoding
a 512-px clip cost ~0.17 s, which made data loading ~2/3 of a training step. Their labels, and so the model's
intensity input, are in 128-px pixels per step, a quarter of the 512-px number: asked intensities are divided by
UNIT before the pipeline, labels multiplied.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import torch  # noqa: E402

RES = 32  # generated and trained frame side
NUM_FRAMES = 8  # the first 8 of the 16 stored frames, 4 fps kept (frame_stride 1): labels keep their meaning
OUT_PX = 512  # everything is reported in pixels per step at 512 px and 4 fps (the paper's units, 0..20)
STORE_PX = 128
UNIT = OUT_PX / STORE_PX
# Every demo clip starts at one end of its motion and sweeps for 8 steps, then back (demo option sweep_steps): the
# first 8 frames of every window, what the model trains on, are the same one-way sweep whatever the speed. Only the
# speed varies, so the model learns the number rather than a spread of directions and phases.
SWEEP_STEPS = 8


def cpu_seconds() -> float:
    """CPU time of this process and of every child it has waited for (hm build, hm train and their workers): a
    figure that, unlike the wall time, does not grow when other work shares the machine."""
    import resource

    usage = [resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return float(sum(u.ru_utime + u.ru_stime for u in usage))


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def hm(*args: str, threads: int, log_file: pathlib.Path | None = None, wait: bool = True):
    """``hm ARGS`` in a subprocess with ``threads`` torch/OpenMP threads."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "GLOG_minloglevel": "2", "TF_CPP_MIN_LOG_LEVEL": "2"}
    cmd = [sys.executable, "-m", "human_motion.cli", *args]
    log("$ hm " + " ".join(args))
    with open(log_file, "w") if log_file else contextlib.nullcontext() as out:  # the child keeps its own copy
        proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT if out else None)
    if wait and proc.wait():
        raise subprocess.CalledProcessError(proc.returncode, cmd)
    return proc


def add_arguments(parser, name: str, models: str, steps: int, vae_steps: int = 600) -> None:
    """The options every recipe benchmark shares; ``name`` names the default work folder, ``models`` the runs,
    ``steps`` their default training steps, ``vae_steps`` those of the small VAE."""
    import tempfile

    parser.add_argument("--work", default=str(pathlib.Path(tempfile.gettempdir()) / f"hm_{name}"),
                        help="shards, base, runs, samples, results.json; existing parts are reused")
    parser.add_argument("--steps", type=int, default=steps, help=f"training steps of each of the {models}")
    parser.add_argument("--vae-steps", type=int, default=vae_steps)
    parser.add_argument("--sample-steps", type=int, default=25, help="DDIM steps of each generated clip")
    parser.add_argument("--threads", type=int, default=2,
                        help="torch threads (split among the runs that train side by side, at least 1 each); on a "
                             "machine shared with other work 1 is faster, as threads wait on each other")
    parser.add_argument("--seed", type=int, default=0, help="training seed (base, VAE and runs)")
    parser.add_argument("--train-set", action="append", default=[], metavar="KEY=VALUE",
                        help="extra --set for every training run")


def start(args) -> pathlib.Path:
    """Applies --threads and makes --work; returns it."""
    torch.set_num_threads(args.threads)
    work = pathlib.Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    return work


# ---------------------------------------------------------------------------------------------------- 1. the data
def build_shards(work: pathlib.Path, demo_options: dict, threads: int) -> pathlib.Path:
    """``hm build`` (in-process, no Ray) of the demo source with ``demo_options``, stored at STORE_PX. Finished shards
    in ``work`` are reused: use a fresh ``--work`` after changing the recipe."""
    shards = work / "shards"
    if (shards / "_build.json").exists() and list(shards.glob("*.tar")):
        log(f"reusing {shards}")
        return shards
    # 16 clips a shard (the build's default until sink.clips_per_shard became 512): training shuffles the shard
    # order each epoch, so small shards mix the clips more than one shard of them in build order does.
    sets = ["ray.address=local", f"decode.size_px={STORE_PX}", f"flow.work_px={STORE_PX}", "sink.clips_per_shard=16",
            *(f"sources.demo.options.{k}={json.dumps(v)}" for k, v in demo_options.items())]
    hm("build", "--out", str(shards), *(a for s in sets for a in ("--set", s)), threads=threads)
    return shards


def shard_samples(shards: pathlib.Path, num_frames: int, id_kind: str, id_dim: int):
    """Every sample of the shards once, decoded at RES by the training data code."""
    from human_motion.model.config import DataConfig, ModelConfig
    from human_motion.model.data import get_dataset

    cfg = DataConfig(resolution=RES, num_frames=num_frames, frame_stride=1, flip_prob=0.0, face_size=RES,
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


def dis():
    from human_motion.backends.optical_flow import OpenCVFlow

    return OpenCVFlow("dis")


def measure(frames_uint8: np.ndarray) -> float:
    """The build's intensity (Eq. 5-7, OpenCV DIS) at the clip's own size, in 512-px pixels per step."""
    from human_motion.backends.optical_flow import measure_intensity

    return float(measure_intensity(frames_uint8, dis(), frames_uint8.shape[1], OUT_PX)[0])


def stats(asked, measured) -> dict:
    from scipy.stats import spearmanr

    asked, measured = np.asarray(asked, np.float64), np.asarray(measured, np.float64)
    # A model that makes the same video whatever is asked orders nothing: 0, not undefined.
    rho = float(spearmanr(asked, measured)[0]) if np.ptp(measured) > 0 and np.ptp(asked) > 0 else 0.0
    return {"spearman": rho, "mae": float(np.abs(asked - measured).mean())}


# ------------------------------------------------------------------------------------------------- 2. the base model
def train_vae(frames: torch.Tensor, steps: int, seed: int):
    """A RES -> RES/2 px, 4-channel AutoencoderKL fitted to the shard frames (N, 3, RES, RES) in [-1, 1]."""
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
               id_dim: int, beta_start: float = 0.00085, beta_end: float = 0.012,
               keys: set[str] | None = None) -> pathlib.Path:
    """A local diffusers-style base: unet/ vae/ text_encoder/ tokenizer/ scheduler/, plus motion_adapter/ and
    image_encoder/ folders (the places model.motion_adapter and model.image_encoder point to). The VAE is fitted to
    the frames of the samples in ``keys`` (all when None). Reused when ``<work>/base/done`` exists."""
    from diffusers import DDIMScheduler, MotionAdapter, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPVisionConfig, CLIPVisionModelWithProjection

    from human_motion.model import tiny

    base = work / "base"
    if (base / "done").exists():
        log(f"reusing {base}")
        return base
    if not (base / "vae" / "config.json").exists():
        frames = torch.cat([s["pixel_values"] for s in shard_samples(shards, 16, id_kind, id_dim)
                            if keys is None or s["key"] in keys])
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


def vae_round_trip(vae, pixel_values: torch.Tensor) -> np.ndarray:
    """(f, 3, RES, RES) in [-1, 1] through the base's VAE -> (f, RES, RES, 3) uint8."""
    with torch.no_grad():
        return to_uint8(vae.decode(vae.encode(pixel_values).latent_dist.mean).sample.clamp(-1, 1))


# ---------------------------------------------------------------------------------------------------- 3. training
def train_runs(work: pathlib.Path, variants: dict[str, list[str]], shards: pathlib.Path, base: pathlib.Path,
               config: str, steps: int, threads: int, id_kind: str, id_dim: int,
               common: list[str]) -> dict[str, pathlib.Path]:
    """One ``hm train --config CONFIG`` per variant, all at once, ``threads // len(variants)`` torch threads each
    (at least one): on a shared 2-core CPU runs side by side with one thread each finish sooner than the same runs
    one after the other with two (OpenMP threads wait on each other). A finished run in ``work`` is reused; one that
    stopped before its end goes on from its last checkpoint, or starts again when it kept none (the runs here
    checkpoint at their last step only)."""
    from human_motion.model.run_folder import checkpoints

    runs, procs = {}, {}
    for name, extra in variants.items():
        run = runs[name] = work / name
        if (run / "adapter").is_dir() and (run / "unet").is_dir():
            log(f"reusing {run}")
            continue
        again = []
        if (run / "config.json").exists():
            again = ["--resume"] if checkpoints(run) else ["--overwrite"]  # complete ones, as --resume reads them
            log(f"{run} stopped before step {steps}: " + ("going on from its last checkpoint" if again == ["--resume"]
                                                           else "it kept no checkpoint, training it again"))
        sets = [f"model.pretrained_model_name_or_path={base}", f"model.motion_adapter={base / 'motion_adapter'}",
                f"model.image_encoder={base / 'image_encoder'}", f"model.id_embedding_kind={id_kind}",
                f"model.id_embedding_dim={id_dim}", f"train.max_train_steps={steps}",
                f"train.checkpointing_steps={steps}", *common, *extra]
        args = ["train", str(shards), "--config", config, "--out", str(run), *again]
        for s in sets:
            args += ["--set", s]
        procs[name] = hm(*args, threads=max(1, threads // len(variants)), log_file=work / f"{name}.log", wait=False)
    for name, proc in procs.items():
        if proc.wait():
            raise RuntimeError(f"hm train for {name} failed; see {work / f'{name}.log'}")
        log(f"{name}: trained")
    return runs


def val_loss_first_last(run: pathlib.Path) -> list[float] | None:
    lines = (run / "logs" / "train.jsonl").read_text().splitlines()
    val = [r["val_loss"] for r in map(json.loads, lines) if "val_loss" in r]
    return [val[0], val[-1]] if val else None


# -------------------------------------------------------------------------------------------------- 4. generation
def load_pipeline(run: pathlib.Path):
    """What ``hm generate --checkpoint RUN`` loads: the base named in the run's config, its adapter/ and, for a
    model.train_unet run like these, the whole trained UNet from unet/; quiet, on the CPU."""
    from human_motion.model.sampling import MotionCharacterPipeline

    pipe = MotionCharacterPipeline.from_pretrained(str(run))
    pipe.to("cpu")
    pipe.set_progress_bar_config(disable=True)
    return pipe


def generate_batch(pipe, face, phrases: list[str], intensities: list[float], seed: int, steps: int,
                   guidance: float) -> list[np.ndarray]:
    """One batch of videos of one reference ``face``, the i-th asked ``phrases[i]`` at ``intensities[i]`` (px per
    step at 512 px), every video from the same initial noise (one generator per video, all seeded with ``seed``), so
    that within the batch only the ask differs. Frames as uint8 (t, h, w, 3)."""
    from human_motion.model.pipeline_output import frames_to_uint8

    out = pipe(reference_face=face, prompt="", action=list(phrases), intensity=[v / UNIT for v in intensities],
               num_frames=NUM_FRAMES, height=RES, width=RES, num_inference_steps=steps, guidance_scale=guidance,
               output_type="np", generator=[torch.Generator().manual_seed(seed) for _ in phrases])
    return [frames_to_uint8(video) for video in out.frames]


def references(work: pathlib.Path, photos: list[str]) -> dict[str, np.ndarray]:
    """The framed portraits the build wrote for ``photos`` (the identities of the sweep), RGB uint8."""
    from PIL import Image

    return {name: np.asarray(Image.open(work / "shards" / "_demo_media" / f"{name}_portrait.jpg").convert("RGB"))
            for name in photos}


def save_gif(frames: np.ndarray, path: pathlib.Path, scale: int = 4) -> None:
    """(f, H, W, 3) uint8 -> an animated GIF at ``scale`` x, 4 fps (the clips' own rate)."""
    from PIL import Image

    images = [Image.fromarray(f).resize((scale * f.shape[1], scale * f.shape[0]), Image.NEAREST) for f in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=250, loop=0)
