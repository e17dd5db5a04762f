"""``hm train``: train MotionCharacter on shards (or synthetic data) with one explicit loop.

    hm train shards/ --config train_tiny --out runs/x [--set train.max_train_steps=10]
    hm train shards/ --out runs/x --resume          # continue runs/x from its last checkpoint
    hm train shards/ --out runs/x --overwrite       # delete the run in runs/x and start again

Modelled on diffusers' ``examples/text_to_image/train_text_to_image.py``: ``train`` reads top to bottom as set-up,
then the loop (encode, add noise, predict, target by ``prediction_type``, loss, ``accelerator.backward``, log,
checkpoint, validate); the pieces are plain functions (``compute_loss``, ``build_model``, ``make_optimizer``; the
run folder in ``run_folder.py``, logging and progress in ``tracking.py``). Distribution is accelerate's: the same
script runs on a CPU, one GPU, or ``accelerate launch`` over several GPUs and nodes (DDP), and its
``save_state``/``load_state`` cover model, optimizer, LR scheduler and RNG. We picked it over Ray Train because the
whole diffusers training ecosystem (mixed precision, gradient checkpointing, hooks that save only the adapter) is
written against it. The data position is ours (``train_state_rank{r}.json``, see ``data.py``), so resuming is exact.
"""

from __future__ import annotations

import json
import math
import pathlib
import sys
import time

import torch

from human_motion.config import ConfigError, load_config, resolve_config_path, to_dict
from human_motion.model.adapter import set_trainable
from human_motion.model.components import decode_latents, encode_video, load_components, load_face_embedder
from human_motion.model.conditioning import MotionCharacterModel, encode_conditions
from human_motion.model.config import DefaultsHelpFormatter, TrainConfig, packaged_configs
from human_motion.model.data import get_dataset
from human_motion.model.losses import (id_consistency_loss, predict_x0, region_aware_loss, region_weights,
                                      square_face_crops)
from human_motion.model.noise import video_noise
from human_motion.model.run_folder import (check_same_model, error_line, load_checkpoint, prepare_run, register_hooks,
                                           remove_run, run_entries, save_checkpoint, save_trained)
from human_motion.model.tracking import PROJECT, Progress, RunLog, flat_config, resolve_trackers
from human_motion.model.validation import target_for, validate

WEIGHT_DTYPES = {"no": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def add_arguments(parser) -> None:
    parser.formatter_class = DefaultsHelpFormatter
    parser.add_argument("shards", nargs="?", help="folder of WebDataset shards from `hm build` (not for synthetic)")
    parser.add_argument("--config", default=None,
                        help=f"config file or packaged name ({', '.join(packaged_configs('train'))}) (default: train; "
                        "with --resume the run's own config.json)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. train.max_train_steps=100")
    parser.add_argument("--out", required=True, help="run folder: checkpoints, logs, samples, final adapter")
    parser.add_argument("--resume", nargs="?", const="latest", default=None, metavar="CHECKPOINT",
                        help="continue the run in --out from its last checkpoint (or from the CHECKPOINT folder)")
    parser.add_argument("--overwrite", action="store_true",
                        help="delete the run in --out (only the files a run writes) and start again")


def run(args) -> int:
    saved = pathlib.Path(args.out) / "config.json"
    resuming = bool(args.resume) and saved.is_file()
    config = args.config or (str(saved) if resuming else "train")
    cfg = load_config(TrainConfig, resolve_config_path(config), args.set)
    if resuming:
        check_same_model(cfg, saved)
    summary = train(cfg, args.shards, args.out, args.resume, args.overwrite)
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
    crops = square_face_crops(frames.flatten(0, 1).float(), boxes.flatten(0, 1), cfg.data.face_size)  # (n*k, 3, S, S)
    frame_embeds = face_embedder(crops).unflatten(0, frames.shape[:2])  # (n, k, d)
    with torch.no_grad():
        reference = face_embedder(batch["face"].to(frames.device)[mask])  # (n, d)
    return id_consistency_loss(reference, frame_embeds)


def compute_loss(c, model, face_embedder, batch: dict, gen: torch.Generator, cfg: TrainConfig, weight_dtype,
                 timesteps: torch.Tensor | None = None):
    """One forward pass: encode, add noise, predict, target by prediction_type -> (loss, L_R, L_id) (Eq. 10, 4, 11).
    ``timesteps`` (b,): drawn from ``gen`` unless given (benchmarks fix them)."""
    device = gen.device
    latents = encode_video(c.vae, batch["pixel_values"].to(device), generator=gen).float()  # (b, c, f, h, w)
    noise = video_noise(latents.shape, gen, device, cfg.model.noise_frame_correlation)
    if timesteps is None:
        timesteps = torch.randint(0, c.noise_scheduler.config.num_train_timesteps, (latents.shape[0],),
                                  generator=gen, device=device)
    noisy_latents = c.noise_scheduler.add_noise(latents, noise, timesteps)
    cond = encode_conditions(c, batch, cfg.model.num_action_tokens, device, weight_dtype)
    model_pred = model(noisy_latents, timesteps, **cond).float()  # (b, c, f, h, w)
    target = target_for(c.noise_scheduler, latents, noise, timesteps)
    weights = region_weights(batch["flow"].to(device), cfg.loss.region_delta, latents.shape[-2:],
                             cfg.loss.region_flow_scale)  # (b, 1, f, h, w)
    loss_region = region_aware_loss(model_pred, target, weights)  # Eq. 10
    loss_id = torch.zeros((), device=device)
    if face_embedder is not None:
        loss_id = id_loss(c, face_embedder, noisy_latents, model_pred, timesteps, batch, cfg)  # Eq. 4
    return loss_region + cfg.loss.id_weight * loss_id, loss_region, loss_id  # Eq. 11


def build_model(cfg: TrainConfig, out: pathlib.Path, device, weight_dtype):
    """(components, face embedder or None, the module accelerate wraps, its trainable parameters)."""
    from diffusers.training_utils import cast_training_params
    from safetensors import SafetensorError

    # The face embedder first: a missing ArcFace file should stop the run before gigabytes of base weights load.
    face_embedder = load_face_embedder(cfg.loss.face_embedder).to(device) if cfg.loss.id_weight > 0 else None
    try:
        c = load_components(cfg.model, out, cfg.train.seed)
    except (OSError, SafetensorError) as e:  # a missing, truncated or foreign weights file: diffusers names it
        raise ConfigError(f"cannot load the model ({error_line(e)}); check model.pretrained_model_name_or_path, "
                          "model.motion_adapter, model.image_encoder, model.unet and model.adapter") from None
    max_frames = getattr(c.unet.config, "motion_max_seq_length", None)
    if max_frames and cfg.data.num_frames > max_frames:
        raise ConfigError(f"data.num_frames={cfg.data.num_frames} is more than the motion modules' positional "
                          f"encoding holds ({max_frames}); set data.num_frames <= {max_frames}")
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
    return c, face_embedder, model, params


def make_optimizer(cfg: TrainConfig, params, num_processes: int):
    from diffusers.optimization import get_scheduler

    optimizer = torch.optim.AdamW(
        params, lr=cfg.optim.learning_rate, betas=(cfg.optim.adam_beta1, cfg.optim.adam_beta2),
        weight_decay=cfg.optim.adam_weight_decay, eps=cfg.optim.adam_epsilon,
    )
    lr_scheduler = get_scheduler(
        cfg.optim.lr_scheduler, optimizer=optimizer,
        num_warmup_steps=cfg.optim.lr_warmup_steps * num_processes,
        num_training_steps=cfg.train.max_train_steps * num_processes,
    )
    return optimizer, lr_scheduler


def start_run(cfg: TrainConfig, out: pathlib.Path, resume: str | None, overwrite: bool):
    """The accelerator, and the checkpoint to resume from; refuses to touch an existing run unless asked."""
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration

    trackers = resolve_trackers(cfg.train.log_with)
    checkpoint = prepare_run(out, resume, overwrite)  # every rank checks before anyone writes
    overwrite = overwrite or (not resume and bool(run_entries(out)))  # the remains of a failed start
    accelerator = Accelerator(
        gradient_accumulation_steps=cfg.train.gradient_accumulation_steps,
        mixed_precision=cfg.train.mixed_precision, log_with=trackers or None,
        project_config=ProjectConfiguration(project_dir=str(out), logging_dir=str(out / "logs")),
    )
    if accelerator.is_main_process:
        if overwrite:
            remove_run(out)
        (out / "logs").mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(to_dict(cfg), indent=2))
        what = f"resuming from {checkpoint}" if checkpoint else "starting a new run"
        if resume and checkpoint is None:
            what = "no checkpoint to resume from yet: starting a new run"
        print(f"hm train: {what} in {out} (trackers: {', '.join(trackers) or 'none'})", file=sys.stderr, flush=True)
    accelerator.wait_for_everyone()
    return accelerator, checkpoint


def train(cfg: TrainConfig, shards: str | None, out_dir: str, resume: str | None = None,
          overwrite: bool = False) -> dict:
    out = pathlib.Path(out_dir)
    accelerator, checkpoint = start_run(cfg, out, resume, overwrite)
    device, seed, rank = accelerator.device, cfg.train.seed, accelerator.process_index
    weight_dtype = WEIGHT_DTYPES[cfg.train.mixed_precision]
    # The data first: unreadable shards should stop the run before gigabytes of base weights load.
    data_kwargs = dict(rank=rank, world_size=accelerator.num_processes, num_threads=cfg.train.dataloader_num_workers)
    dataset = get_dataset(cfg.data, cfg.model, shards, seed, **data_kwargs)
    # Fixed validation batch: the first batch of the run, same in a resumed run.
    fixed_batch = next(get_dataset(cfg.data, cfg.model, shards, seed, **data_kwargs).batches(
        cfg.train.train_batch_size))[0]
    c, face_embedder, model, params = build_model(cfg, out, device, weight_dtype)
    register_hooks(accelerator, cfg.model.train_unet, cfg.model.train_motion_modules)
    optimizer, lr_scheduler = make_optimizer(cfg, params, accelerator.num_processes)
    model, optimizer, lr_scheduler = accelerator.prepare(model, optimizer, lr_scheduler)
    # Resume: accelerate restores weights, optimizer, scheduler and RNG; train_state_rank{r}.json the data position.
    step, data_slot = load_checkpoint(accelerator, checkpoint) if checkpoint else (0, 0)
    # TensorBoard hides the events a killed run logged past the checkpoint (purge_step), as train.jsonl drops them.
    accelerator.init_trackers(PROJECT, config=flat_config(to_dict(cfg)),
                              init_kwargs={"tensorboard": {"purge_step": step + 1}} if resume else {})
    log = RunLog(accelerator, out / "logs" / "train.jsonl", step)

    if step == 0:
        validate(accelerator, model, c, fixed_batch, cfg, out, 0, log, weight_dtype)
    progress = Progress(cfg.train.max_train_steps, step, accelerator.is_main_process, cfg.train.progress_every_s)
    model.train()
    start_time, last_loss = time.time(), math.nan
    try:
        for batch, next_slot in dataset.batches(cfg.train.train_batch_size, start=data_slot):
            if step >= cfg.train.max_train_steps:
                break
            # Every random draw of this step comes from (seed, step, rank): the same in a resumed run.
            gen = torch.Generator(device).manual_seed((seed * 1_000_003 + step) * 4096 + rank)
            with accelerator.accumulate(model):
                loss, loss_region, loss_id = compute_loss(c, model, face_embedder, batch, gen, cfg, weight_dtype)
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
                losses = accelerator.reduce(torch.stack([loss.detach(), loss_region.detach(), loss_id.detach()])
                                            .float(), reduction="mean").tolist()
                counts = torch.tensor([int(batch["static"].sum()), sum(dataset.bad.counts.values())], device=device)
                counts = accelerator.reduce(counts, reduction="sum").tolist()
                last_loss = losses[0]
                log({"step": step, "loss": losses[0], "loss_region": losses[1], "loss_id": losses[2],
                     "lr": lr_scheduler.get_last_lr()[0], "static": counts[0], "bad_samples": counts[1],
                     "elapsed_s": round(time.time() - start_time, 3)})
            if math.isnan(last_loss):  # before the first logged step: this rank's loss, not "nan" on the console
                last_loss = loss.item()
            progress.update(step, last_loss, lr_scheduler.get_last_lr()[0])
            if step % cfg.train.checkpointing_steps == 0 or step == cfg.train.max_train_steps:
                save_checkpoint(accelerator, out, step, next_slot, cfg.train.checkpoints_total_limit)
                validate(accelerator, model, c, fixed_batch, cfg, out, step, log, weight_dtype)
    finally:
        progress.close()

    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        save_trained(accelerator.unwrap_model(model), out, cfg.model.train_unet, cfg.model.train_motion_modules)
    accelerator.end_training()
    return {"step": step, "loss": last_loss, "out": str(out), "data": dataset.bad.summary()}
