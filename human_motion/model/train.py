"""``hm train``: train MotionCharacter on shards (or synthetic data) with one explicit loop.

    hm train shards/ --config train_tiny --out runs/x [--set train.max_train_steps=10] [--resume latest]

Modelled on diffusers' ``examples/text_to_image/train_text_to_image.py``. Distribution is accelerate's: the same
script runs on a CPU, one GPU, or ``accelerate launch`` over several GPUs and nodes (DDP), and its
``save_state``/``load_state`` cover model, optimizer, LR scheduler and RNG. We picked it over Ray Train because the
whole diffusers training ecosystem (mixed precision, gradient checkpointing, hooks that save only the adapter) is
written against it. The data position is ours (``train_state.json``, see ``data.py``), so resuming is exact.
"""

from __future__ import annotations

import json
import logging
import math
import pathlib
import shutil
import time

import torch

from human_motion.config import ConfigError, load_config, resolve_config_path, to_dict
from human_motion.model.adapter import MotionCharacterAdapter, set_trainable
from human_motion.model.components import (decode_latents, encode_video, load_components, load_face_embedder,
                                           load_unet_weights, save_unet)
from human_motion.model.conditioning import MotionCharacterModel, encode_conditions
from human_motion.model.config import TrainConfig
from human_motion.model.data import get_dataset
from human_motion.model.losses import crop_faces, id_consistency_loss, predict_x0, region_aware_loss, region_weights
from human_motion.model.noise import video_noise
from human_motion.model.validation import fixed_batch_loss, sample_clips, save_gif, target_for

logger = logging.getLogger(__name__)


def add_arguments(parser) -> None:
    parser.add_argument("shards", nargs="?", help="folder of WebDataset shards from `hm build` (not for synthetic)")
    parser.add_argument("--config", default="train", help="config file or packaged name (train, train_tiny)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    parser.add_argument("--out", required=True, help="run folder: checkpoints, logs, samples, final adapter")
    parser.add_argument("--resume", default=None, help="'latest' or a checkpoint folder")


def run(args) -> int:
    cfg = load_config(TrainConfig, resolve_config_path(args.config), args.set)
    summary = train(cfg, args.shards, args.out, args.resume)
    print(json.dumps(summary))
    return 0


def id_loss(c, face_embedder, noisy_latents, model_pred, timesteps, batch, cfg: TrainConfig) -> torch.Tensor:
    """Eq. 4 on the samples noised at t <= t_hat: DDIM x0 estimate -> VAE decode of ``id_num_frames`` frames ->
    face crops at the stored boxes -> phi, against phi of the reference face. Zero when no sample qualifies."""
    mask = timesteps <= cfg.loss.id_max_timestep  # (b,)
    if not mask.any():
        return model_pred.sum() * 0.0  # keeps the graph identical across ranks
    x0 = predict_x0(noisy_latents[mask], model_pred[mask], timesteps[mask], c.noise_scheduler.alphas_cumprod,
                    c.noise_scheduler.config.prediction_type)  # (n, c, f, h, w)
    frames_idx = torch.linspace(0, x0.shape[2] - 1, cfg.loss.id_num_frames).round().long().unique()
    frames = decode_latents(c.vae, x0[:, :, frames_idx])  # (n, k, 3, H, W)
    boxes = batch["face_boxes"].to(frames.device)[mask][:, frames_idx]  # (n, k, 4)
    # Square crops around the box centre, so the face is not stretched before the embedder (ArcFace sees squares).
    centre, half = (boxes[..., :2] + boxes[..., 2:]) / 2, (boxes[..., 2:] - boxes[..., :2]).amax(-1, keepdim=True) / 2
    boxes = torch.cat([centre - half, centre + half], dim=-1)
    crops = crop_faces(frames.flatten(0, 1).float(), boxes.flatten(0, 1), cfg.data.face_size)  # (n*k, 3, S, S)
    frame_embeds = face_embedder(crops).unflatten(0, frames.shape[:2])  # (n, k, d)
    with torch.no_grad():
        reference = face_embedder(batch["face"].to(frames.device)[mask])  # (n, d)
    return id_consistency_loss(reference, frame_embeds)


def _checkpoints(out: pathlib.Path) -> list[pathlib.Path]:
    """Complete checkpoints, oldest first: ``train_state_rank0.json`` is written after ``save_state`` returns, so a
    run killed while saving leaves a folder without it, which is ignored."""
    found = [p for p in (out / "checkpoints").glob("checkpoint-*") if (p / "train_state_rank0.json").is_file()]
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


def save_checkpoint(accelerator, out: pathlib.Path, step: int, data_slot: int, limit: int | None) -> pathlib.Path:
    """accelerate state (adapter via the save hook, optimizer, scheduler, RNG) + our data position per rank; then
    drop the oldest checkpoints beyond ``limit`` (only once the new one is complete)."""
    path = out / "checkpoints" / f"checkpoint-{step}"
    accelerator.save_state(str(path))
    (path / f"train_state_rank{accelerator.process_index}.json").write_text(
        json.dumps({"step": step, "data_slot": data_slot}))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process and limit is not None:
        for old in _checkpoints(out)[:-limit]:
            shutil.rmtree(old)
    return path


def find_checkpoint(out: pathlib.Path, resume: str) -> pathlib.Path | None:
    if resume != "latest":
        return pathlib.Path(resume)
    found = _checkpoints(out)
    return found[-1] if found else None


def train(cfg: TrainConfig, shards: str | None, out_dir: str, resume: str | None = None) -> dict:
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration
    from diffusers.optimization import get_scheduler
    from diffusers.training_utils import cast_training_params

    out = pathlib.Path(out_dir)
    accelerator = Accelerator(
        gradient_accumulation_steps=cfg.train.gradient_accumulation_steps,
        mixed_precision=cfg.train.mixed_precision,
        project_config=ProjectConfiguration(project_dir=str(out)),
    )
    if accelerator.is_main_process:
        (out / "logs").mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(to_dict(cfg), indent=2))
    accelerator.wait_for_everyone()
    device, seed, rank = accelerator.device, cfg.train.seed, accelerator.process_index
    weight_dtype = {"no": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[cfg.train.mixed_precision]

    SummaryWriter = None
    if cfg.train.tensorboard:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError("train.tensorboard needs the tensorboard package: pip install tensorboard") from None
    # The face embedder first: a missing ArcFace file should stop the run before gigabytes of base weights load.
    face_embedder = load_face_embedder(cfg.loss.face_embedder).to(device) if cfg.loss.id_weight > 0 else None
    c = load_components(cfg.model, out, seed)
    params = set_trainable(c.unet, c.adapter, cfg.model.train_motion_modules, cfg.model.train_unet)
    if cfg.train.gradient_checkpointing:
        c.unet.enable_gradient_checkpointing()
    for m in (c.vae, c.text_encoder, c.image_encoder):
        m.to(device)
        if weight_dtype != torch.float32:
            m.to(dtype=weight_dtype)
    model = MotionCharacterModel(c.unet, c.adapter).to(device)
    if weight_dtype != torch.float32:  # frozen base in half precision, trainable weights in fp32 (diffusers' LoRA)
        model.to(weight_dtype)
        cast_training_params(model, dtype=torch.float32)

    def save_model_hook(models, weights, output_dir):
        # Save only the new weights (and the motion modules when they train), not the frozen base.
        if accelerator.is_main_process:
            for m in models:
                m = accelerator.unwrap_model(m)
                m.adapter.save_pretrained(pathlib.Path(output_dir) / "adapter")
                if cfg.model.train_unet:
                    save_unet(m.unet, pathlib.Path(output_dir) / "unet")
                elif cfg.model.train_motion_modules:
                    m.unet.save_motion_modules(str(pathlib.Path(output_dir) / "motion_modules"))
        while weights:
            weights.pop()

    def load_model_hook(models, input_dir):
        from diffusers import MotionAdapter

        while models:
            m = accelerator.unwrap_model(models.pop())
            saved = MotionCharacterAdapter.from_pretrained(pathlib.Path(input_dir) / "adapter", use_safetensors=True)
            m.adapter.load_state_dict(saved.state_dict())  # strict: every key present, none extra
            if cfg.model.train_unet:
                load_unet_weights(m.unet, pathlib.Path(input_dir) / "unet")
            elif cfg.model.train_motion_modules:
                motion = MotionAdapter.from_pretrained(pathlib.Path(input_dir) / "motion_modules", use_safetensors=True)
                m.unet.load_motion_modules(motion)

    accelerator.register_save_state_pre_hook(save_model_hook)
    accelerator.register_load_state_pre_hook(load_model_hook)

    optimizer = torch.optim.AdamW(
        params, lr=cfg.optim.learning_rate, betas=(cfg.optim.adam_beta1, cfg.optim.adam_beta2),
        weight_decay=cfg.optim.adam_weight_decay, eps=cfg.optim.adam_epsilon,
    )
    lr_scheduler = get_scheduler(
        cfg.optim.lr_scheduler, optimizer=optimizer,
        num_warmup_steps=cfg.optim.lr_warmup_steps * accelerator.num_processes,
        num_training_steps=cfg.train.max_train_steps * accelerator.num_processes,
    )
    model, optimizer, lr_scheduler = accelerator.prepare(model, optimizer, lr_scheduler)

    # Resume: accelerate restores weights, optimizer, scheduler and RNG; train_state_rank{r}.json the data position.
    step, data_slot = 0, 0
    checkpoint = find_checkpoint(out, resume) if resume else None
    if resume and checkpoint is None:
        logger.warning("--resume %s: no checkpoint in %s, starting a new run", resume, out)
    if checkpoint is not None:
        accelerator.load_state(str(checkpoint))
        state = json.loads((checkpoint / f"train_state_rank{rank}.json").read_text())
        step, data_slot = state["step"], state["data_slot"]
    log_path = out / "logs" / "train.jsonl"
    if accelerator.is_main_process:  # drop log lines of a killed run past the checkpoint we resume from
        lines = log_path.read_text().splitlines() if log_path.exists() else []
        log_path.write_text("".join(f"{l}\n" for l in lines if json.loads(l)["step"] <= step))
    tb = SummaryWriter(str(out / "logs" / "tensorboard")) if SummaryWriter and accelerator.is_main_process else None

    def log(record: dict) -> None:
        if accelerator.is_main_process:
            with log_path.open("a") as f:
                f.write(json.dumps(record) + "\n")
            if tb is not None:
                for k, v in record.items():
                    if k != "step" and isinstance(v, (int, float)):
                        tb.add_scalar(k, v, record["step"])

    data_kwargs = dict(rank=rank, world_size=accelerator.num_processes, num_threads=cfg.train.dataloader_num_workers)
    dataset = get_dataset(cfg.data, cfg.model, shards, seed, **data_kwargs)
    # Fixed validation batch: the first batch of the run, same in a resumed run.
    fixed_data = get_dataset(cfg.data, cfg.model, shards, seed, **data_kwargs)
    fixed_batch = next(fixed_data.batches(cfg.train.train_batch_size))[0]

    def validate(step: int) -> None:
        if not accelerator.is_main_process:
            return
        unwrapped = accelerator.unwrap_model(model)
        cond = encode_conditions(c, fixed_batch, cfg.model.num_action_tokens, device, weight_dtype)
        record = {"step": step, "event": "validation"}
        with accelerator.autocast():
            if cfg.validation.fixed_batch_loss:
                record["val_loss"] = fixed_batch_loss(unwrapped, c, fixed_batch, cond, cfg.loss.region_delta, seed,
                                                      cfg.model.noise_frame_correlation)
            n = min(cfg.validation.num_samples, cfg.train.train_batch_size)
            if n:
                clips = sample_clips(unwrapped, c, {k: v[:n] for k, v in cond.items()}, cfg.data.num_frames,
                                     cfg.data.resolution, cfg.validation.num_inference_steps,
                                     cfg.validation.guidance_scale, seed, cfg.model.noise_frame_correlation)
                (out / "samples").mkdir(exist_ok=True)
                for i, clip in enumerate(clips):
                    save_gif(clip, out / "samples" / f"step{step:06d}_{i}.gif")
        log(record)

    if step == 0:
        validate(0)
    model.train()
    start_time, last_loss = time.time(), math.nan
    for batch, next_slot in dataset.batches(cfg.train.train_batch_size, start=data_slot):
        if step >= cfg.train.max_train_steps:
            break
        # Every random draw of this step comes from (seed, step, rank): the same in an uninterrupted and a resumed run.
        gen = torch.Generator(device).manual_seed((seed * 1_000_003 + step) * 4096 + rank)
        with accelerator.accumulate(model):
            latents = encode_video(c.vae, batch["pixel_values"].to(device), generator=gen).float()  # (b, c, f, h, w)
            noise = video_noise(latents.shape, gen, device, cfg.model.noise_frame_correlation)
            timesteps = torch.randint(0, c.noise_scheduler.config.num_train_timesteps, (latents.shape[0],),
                                      generator=gen, device=device)
            noisy_latents = c.noise_scheduler.add_noise(latents, noise, timesteps)
            cond = encode_conditions(c, batch, cfg.model.num_action_tokens, device, weight_dtype)
            model_pred = model(noisy_latents, timesteps, **cond).float()  # (b, c, f, h, w)
            target = target_for(c.noise_scheduler, latents, noise, timesteps)
            weights = region_weights(batch["flow"].to(device), cfg.loss.region_delta, latents.shape[-2:])
            loss_region = region_aware_loss(model_pred, target, weights)  # Eq. 10
            loss_id = torch.zeros((), device=device)
            if face_embedder is not None:
                loss_id = id_loss(c, face_embedder, noisy_latents, model_pred, timesteps, batch, cfg)  # Eq. 4
            loss = loss_region + cfg.loss.id_weight * loss_id  # Eq. 11
            accelerator.backward(loss)
            if accelerator.sync_gradients:
                accelerator.clip_grad_norm_(params, cfg.optim.max_grad_norm)
            optimizer.step()
            lr_scheduler.step()
            optimizer.zero_grad(set_to_none=True)
        if not accelerator.sync_gradients:
            continue
        step += 1
        if step % cfg.train.log_every_steps == 0:  # every rank reaches this at the same steps (collectives)
            losses = torch.stack([loss.detach(), loss_region.detach(), loss_id.detach()]).float()
            losses = accelerator.reduce(losses, reduction="mean").tolist()
            counts = torch.tensor([int(batch["static"].sum()), sum(dataset.bad.counts.values())], device=device)
            counts = accelerator.reduce(counts, reduction="sum").tolist()
            last_loss = losses[0]
            log({"step": step, "loss": losses[0], "loss_region": losses[1], "loss_id": losses[2],
                 "lr": lr_scheduler.get_last_lr()[0], "static": counts[0], "bad_samples": counts[1],
                 "elapsed_s": round(time.time() - start_time, 3)})
        if step % cfg.train.checkpointing_steps == 0 or step == cfg.train.max_train_steps:
            save_checkpoint(accelerator, out, step, next_slot, cfg.train.checkpoints_total_limit)
            validate(step)

    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        unwrapped = accelerator.unwrap_model(model)
        unwrapped.adapter.save_pretrained(out / "adapter")
        if cfg.model.train_unet:
            save_unet(unwrapped.unet, out / "unet")
        elif cfg.model.train_motion_modules:
            unwrapped.unet.save_motion_modules(str(out / "motion_modules"))
    accelerator.end_training()
    return {"step": step, "loss": last_loss, "out": str(out), "data": dataset.bad.summary()}
