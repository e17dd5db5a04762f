"""The run folder of ``hm train``: what it holds, the guard that keeps a run from being overwritten by accident,
and checkpoints (accelerate's ``save_state``/``load_state`` with hooks that save only the trained weights).

    RUN/config.json                the resolved config
    RUN/logs/train.jsonl           one line per logged step and per validation; trackers write under RUN/logs/
    RUN/checkpoints/checkpoint-N/  accelerate state + train_state_rank{r}.json (step, data position)
    RUN/samples/stepNNNNNN_i.gif   validation clips
    RUN/adapter/ (unet/, motion_modules/)   the final trained weights
    RUN/tiny_tokenizer/            the tiny config's tokenizer (tiny runs only)

A second ``hm train`` into a folder that holds a run refuses unless it says ``--resume`` (continue from the last
complete checkpoint) or ``--overwrite`` (remove these entries, and nothing else, then start again). The remains of a
start that failed before its first logged step are replaced without asking.
"""

from __future__ import annotations

import json
import logging
import pathlib
import pickle
import shutil

from human_motion.config import ConfigError

logger = logging.getLogger(__name__)

RUN_ENTRIES = ("config.json", "logs", "checkpoints", "samples", "adapter", "unet", "motion_modules",
               "tiny_tokenizer")
STATE_FILE = "train_state_rank{rank}.json"


def run_entries(out: pathlib.Path) -> list[str]:
    """The entries of a run that ``out`` holds (empty for a new or unrelated folder)."""
    return [name for name in RUN_ENTRIES if (out / name).exists() or (out / name).is_symlink()]


def has_progress(out: pathlib.Path) -> bool:
    """Whether a run in ``out`` got anywhere: a logged step or validation, a checkpoint, samples or final weights.
    A start that failed (a config error, unreadable shards) leaves only config.json and empty logs."""
    log = out / "logs" / "train.jsonl"
    return (any((out / name).exists() for name in ("checkpoints", "samples", "adapter", "unet", "motion_modules"))
            or (log.is_file() and log.stat().st_size > 0))


def checkpoints(out: pathlib.Path) -> list[pathlib.Path]:
    """Complete checkpoints, oldest first: the rank-0 state file is written after ``save_state`` returns, so a run
    killed while saving leaves a folder without it, which is ignored."""
    found = [p for p in (out / "checkpoints").glob("checkpoint-*")
             if p.name.split("-")[1].isdigit() and (p / STATE_FILE.format(rank=0)).is_file()]
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


def prepare_run(out: pathlib.Path, resume: str | None, overwrite: bool) -> pathlib.Path | None:
    """Refuse to touch an existing run unless asked; with ``overwrite`` remove its entries (main process only: the
    caller waits for everyone after). Returns the checkpoint to resume from, if any."""
    if resume and overwrite:
        raise ConfigError("--resume and --overwrite contradict each other: --resume continues the run in --out, "
                          "--overwrite starts it again; give one")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a folder; give a new or existing run folder")
    existing = run_entries(out)
    if resume:
        return find_checkpoint(out, resume)
    if existing and not overwrite and has_progress(out):
        raise ConfigError(f"{out} already holds a training run ({', '.join(existing)}); pass --resume to continue it "
                          "from its last checkpoint, --overwrite to delete it and start again, or another --out")
    return None


def check_same_model(cfg, saved: pathlib.Path) -> None:
    """``--resume`` with a config whose model differs from the run's would load weights of other shapes (or train
    another model on top of these): refuse it, naming the first difference."""
    from human_motion.config import to_dict

    try:
        before = json.loads(saved.read_text()).get("model", {})
    except (OSError, ValueError, AttributeError):
        raise ConfigError(f"{saved}: not readable as the run's config; start the run again with --overwrite") from None
    now = to_dict(cfg)["model"]
    changed = [k for k in now if k in before and before[k] != now[k]]
    if changed:
        k = changed[0]
        raise ConfigError(f"{saved.parent}: the run was trained with model.{k}={before[k]!r}, this command gives "
                          f"{now[k]!r}; resume without --config (the run's own config.json is used), or start a new "
                          "run (another --out, or --overwrite)")


def remove_run(out: pathlib.Path) -> None:
    """``--overwrite``: delete what a run writes, and nothing else in the folder."""
    for name in run_entries(out):
        path = out / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


def find_checkpoint(out: pathlib.Path, resume: str) -> pathlib.Path | None:
    """``latest``: the last complete checkpoint of ``out`` (None when there is none yet); else a checkpoint folder."""
    if resume == "latest":
        found = checkpoints(out)
        return found[-1] if found else None
    path = pathlib.Path(resume)
    if not (path / STATE_FILE.format(rank=0)).is_file():
        raise ConfigError(f"--resume {resume}: not a complete checkpoint of `hm train` (no "
                          f"{STATE_FILE.format(rank=0)}); give a RUN/checkpoints/checkpoint-N folder or 'latest'")
    return path


def save_checkpoint(accelerator, out: pathlib.Path, step: int, data_slot: int, limit: int | None) -> pathlib.Path:
    """accelerate state (adapter via the save hook, optimizer, scheduler, RNG) + our data position per rank; then
    drop the oldest checkpoints beyond ``limit`` (only once the new one is complete)."""
    path = out / "checkpoints" / f"checkpoint-{step}"
    accelerator.save_state(str(path))
    (path / STATE_FILE.format(rank=accelerator.process_index)).write_text(
        json.dumps({"step": step, "data_slot": data_slot}))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process and limit is not None:
        for old in checkpoints(out)[:-limit]:
            shutil.rmtree(old)
    return path


def error_line(e: BaseException) -> str:
    """An exception as one short line (loaders raise multi-line messages; a refusal is one line)."""
    return f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:300]}"


def load_checkpoint(accelerator, checkpoint: pathlib.Path) -> tuple[int, int]:
    """Restore weights, optimizer, scheduler and RNG; returns (step, data slot). A damaged or foreign checkpoint
    (pickles where tensors belong, a truncated file, another model's weights) is refused in one line."""
    from safetensors import SafetensorError

    try:
        accelerator.load_state(str(checkpoint))
        state = json.loads((checkpoint / STATE_FILE.format(rank=accelerator.process_index)).read_text())
        return int(state["step"]), int(state["data_slot"])
    except (OSError, ValueError, KeyError, RuntimeError, EOFError, pickle.UnpicklingError, SafetensorError) as e:
        raise ConfigError(f"{checkpoint}: cannot be resumed ({error_line(e)}); it is damaged or was "
                          "not written by this config's `hm train`: resume from an earlier checkpoint "
                          "(--resume RUN/checkpoints/checkpoint-N) or start again with --overwrite") from None


def register_hooks(accelerator, train_unet: bool, train_motion_modules: bool) -> None:
    """Checkpoints hold only the new weights (and the UNet parts that train), not the frozen base."""
    from diffusers import MotionAdapter

    from human_motion.model.adapter import MotionCharacterAdapter
    from human_motion.model.components import load_unet_weights

    def save_model_hook(models, weights, output_dir):
        if accelerator.is_main_process:
            for m in models:
                save_trained(accelerator.unwrap_model(m), pathlib.Path(output_dir), train_unet, train_motion_modules)
        while weights:
            weights.pop()

    def load_model_hook(models, input_dir):
        while models:
            m = accelerator.unwrap_model(models.pop())
            saved = MotionCharacterAdapter.from_pretrained(pathlib.Path(input_dir) / "adapter", use_safetensors=True)
            m.adapter.load_state_dict(saved.state_dict())  # strict: every key present, none extra
            if train_unet:
                load_unet_weights(m.unet, pathlib.Path(input_dir) / "unet")
            elif train_motion_modules:
                motion = MotionAdapter.from_pretrained(pathlib.Path(input_dir) / "motion_modules", use_safetensors=True)
                m.unet.load_motion_modules(motion)

    accelerator.register_save_state_pre_hook(save_model_hook)
    accelerator.register_load_state_pre_hook(load_model_hook)


def save_trained(model, out: pathlib.Path, train_unet: bool, train_motion_modules: bool) -> None:
    """The adapter, plus the whole UNet (``train_unet``) or its motion modules when they train."""
    from human_motion.model.components import save_unet

    model.adapter.save_pretrained(out / "adapter")
    if train_unet:
        save_unet(model.unet, out / "unet")
    elif train_motion_modules:
        model.unet.save_motion_modules(str(out / "motion_modules"))
