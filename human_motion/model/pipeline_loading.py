"""Where ``MotionCharacterPipeline`` comes from: a run folder of ``hm train``, or a folder of ``save_pretrained``.

A run folder holds the resolved training ``config.json`` and the new weights only (``adapter/``, and ``unet/`` or
``motion_modules/`` when they were trained); the base model is rebuilt from what the config names. A saved folder
is a standard diffusers pipeline folder: ``model_index.json``, one subfolder per component (safetensors), and
``pipeline.py``, the two-line module that lets ``DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)``
find the class (diffusers resolves ``"_class_name": ["pipeline", "MotionCharacterPipeline"]`` to that file).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import pathlib
import re

from human_motion.config import ConfigError
from human_motion.model.weights_errors import deepest_cause, weights_error

PIPELINE_MODULE = "pipeline"  # the file name diffusers looks for, from model_index.json's _class_name
# Only an import: the code is the installed package's, so trusting this file trusts nothing beyond it.
PIPELINE_CODE = '''"""MotionCharacterPipeline, for `DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)`.

Written by human_motion's `MotionCharacterPipeline.save_pretrained`; the code is the installed human-motion package's.
"""

from human_motion.model.sampling import MotionCharacterPipeline

__all__ = ["MotionCharacterPipeline"]
'''


class _DropNoise(logging.Filter):
    """Two diffusers log lines that say nothing to a user: "An error occurred while trying to fetch ...", logged just
    before it raises an OSError that says the same (the raised error is the one line a refusal prints), and "There
    are modules in UNetMotionModel that should be kept in float32: []", which every ``from_unet2d`` logs although
    the list is empty."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        return not (text.startswith("An error occurred while trying to fetch") or "kept in float32: []." in text)


logging.getLogger("diffusers.models.modeling_utils").addFilter(_DropNoise())


# What a pipeline needs from the training config when it is loaded from a run folder (the rest stays with the run).
PAPER_DEFAULTS = {"num_frames": 16, "resolution": 512, "face_size": 112, "num_inference_steps": 30,
                  "guidance_scale": 8.0}


def is_saved_pipeline(path: pathlib.Path) -> bool:
    return (path / "model_index.json").is_file()


def find_run_dir(path: str | pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    """(run folder with the resolved ``config.json``, adapter folder) for a run folder, a checkpoint folder
    (``runs/x/checkpoints/checkpoint-N``) or an adapter folder (``runs/x/adapter``)."""
    path = pathlib.Path(path).expanduser()
    if not path.exists():
        raise ConfigError(f"checkpoint {path} does not exist; pass a run folder saved by `hm train` or a folder "
                          "saved by `save_pretrained`")
    if (path / "adapter").is_dir():
        adapter = path / "adapter"
    elif (path / "diffusion_pytorch_model.safetensors").is_file():
        adapter = path
    else:
        raise ConfigError(f"{path} has no adapter/ folder and no model_index.json; pass a run folder saved by "
                          "`hm train` (or one of its checkpoints/checkpoint-N) or a folder saved by `save_pretrained`")
    for run in [path, *list(path.parents)[:3]]:
        cfg = run / "config.json"
        if cfg.is_file():
            try:
                data = json.loads(cfg.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError):
                continue
            if isinstance(data, dict) and "model" in data and "train" in data:
                return run, adapter
    raise ConfigError(f"no training config.json (written by `hm train`) in {path} or the folders above it")


def settings_from_run(data: dict, cfg) -> dict:
    """The pipeline's own settings (``__init__`` keywords saved in ``model_index.json``) from a run's config: its
    training size and noise prior, its reference-face embedder, and its sampling defaults when the config has a
    ``sampling`` section (``num_inference_steps``, ``guidance_scale``), else the paper's 30 / 8.0."""
    sampling = data.get("sampling") or {}
    return {
        "num_frames": int(cfg.data.num_frames),
        "resolution": int(cfg.data.resolution),
        "face_size": int(cfg.data.face_size),
        "noise_frame_correlation": float(cfg.model.noise_frame_correlation),
        "num_inference_steps": int(sampling.get("num_inference_steps") or PAPER_DEFAULTS["num_inference_steps"]),
        "guidance_scale": float(sampling.get("guidance_scale") or PAPER_DEFAULTS["guidance_scale"]),
        "id_embedding_kind": cfg.model.id_embedding_kind,
    }


def components_from_run(path: str | pathlib.Path):
    """(``Components``, pipeline settings, the run's config as plain data) for a run, checkpoint or adapter folder:
    the base named by the run's config (``tiny``/``random-sd15`` rebuilt with the run's seed), then the trained
    parts the run saved."""
    from human_motion.config import _build
    from human_motion.model.components import load_components, load_unet_weights
    from human_motion.model.config import TrainConfig

    run, adapter_dir = find_run_dir(path)
    data = json.loads((run / "config.json").read_text())
    cfg = _build(TrainConfig, data)
    # A run with model.train_unet saved its whole trained UNet in unet/: that replaces the UNet it started from
    # (the base's, or model.unet's, which is then not read at all).
    unet_dir = adapter_dir.parent / "unet"
    trained_unet = unet_dir.is_dir()
    model_cfg = dataclasses.replace(cfg.model, adapter=str(adapter_dir), unet=None if trained_unet else cfg.model.unet)
    c = load_components(model_cfg, run, seed=cfg.train.seed)
    if trained_unet:
        load_unet_weights(c.unet, unet_dir)
    motion_dir = adapter_dir.parent / "motion_modules"
    if motion_dir.is_dir():
        from diffusers import MotionAdapter

        c.unet.load_motion_modules(MotionAdapter.from_pretrained(motion_dir, use_safetensors=True))
    return c, settings_from_run(data, cfg), data


def check_pipeline_file(folder: pathlib.Path) -> bool:
    """True when ``folder/pipeline.py`` is the file ``save_pretrained`` writes (then diffusers may import it: it
    only imports this package); raises when it is anything else, because loading would run the folder's code."""
    file = folder / f"{PIPELINE_MODULE}.py"
    if not file.exists():
        return False
    if file.read_bytes() != PIPELINE_CODE.encode():
        raise ConfigError(f"{file} is not the file MotionCharacterPipeline.save_pretrained writes; it is code from "
                          "the checkpoint folder and is not run: delete it (the weights load without it), or load with "
                          "DiffusionPipeline.from_pretrained(folder, trust_remote_code=True) if you trust it")
    return True


def write_pipeline_file(folder: pathlib.Path) -> None:
    """``pipeline.py``, the module ``model_index.json``'s ``["pipeline", class]`` names (``class_name_entry``)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{PIPELINE_MODULE}.py").write_text(PIPELINE_CODE)


def class_name_entry(config_json: str) -> str:
    """A pipeline's ``model_index.json`` text with ``_class_name`` as diffusers' custom pipelines have it:
    ``[module file, class]``, which ``DiffusionPipeline.from_pretrained`` resolves to that file in the folder."""
    data = json.loads(config_json)
    data["_class_name"] = [PIPELINE_MODULE, data["_class_name"]]
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def load_error(path, error: BaseException) -> ConfigError:
    """One line for a checkpoint whose files cannot be loaded: which file, what is wrong, what to do."""
    text = " ".join(str(error).split())
    missing = re.search(r"no file named (\S+) found in directory (\S+?)\.?$", text)
    if missing:
        return ConfigError(f"{pathlib.Path(missing.group(2)) / missing.group(1)} is missing: only safetensors weights "
                           "are read (never pickled .bin/.ckpt files); save the checkpoint again with `hm train` or "
                           "save_pretrained")
    file = re.search(r"'([^']+\.safetensors)'", text)
    if file:
        return weights_error(pathlib.Path(file.group(1)), error)
    inner = deepest_cause(error)
    detail = " ".join(str(inner).split())[:200] or type(inner).__name__
    return ConfigError(f"checkpoint {path} cannot be loaded ({type(inner).__name__}: {detail}); pass a run folder "
                       "of `hm train` or a folder of save_pretrained, copied whole")
