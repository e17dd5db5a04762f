"""The intensity-control recipe (benchmarks/intensity_control.py): a whole UNet trained from scratch
(``model.train_unet``), saved and loaded back; the ablation blind to intensity; the recipe end to end at tiny steps."""

from __future__ import annotations

import importlib.util
import json
import pathlib
import shutil

import pytest
import torch
from safetensors.torch import load_file

from human_motion.cli import main
from human_motion.model.adapter import set_trainable

from .conftest import tiny_model_config

ROOT = pathlib.Path(__file__).resolve().parents[2]
QUIET = ["--set", "validation.num_samples=0"]


def test_train_unet_makes_every_unet_weight_trainable(tiny_components):
    c = tiny_components
    adapter_only = {id(p) for p in set_trainable(c.unet, c.adapter)}
    everything = {id(p) for p in set_trainable(c.unet, c.adapter, train_unet=True)}
    assert adapter_only < everything
    assert {id(p) for p in c.unet.parameters()} | {id(p) for p in c.adapter.parameters()} == everything


def test_train_unet_saves_resumes_and_loads_the_trained_unet(tmp_path):
    from human_motion.model.components import load_components

    out = tmp_path / "run"
    args = ["train", "--config", "train_tiny", "--out", str(out), *QUIET, "--set", "data.dataset_type=synthetic",
            "--set", "model.train_unet=true"]
    assert main([*args, "--set", "train.max_train_steps=2"]) == 0
    assert (out / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    assert (out / "checkpoints" / "checkpoint-2" / "unet").is_dir()
    assert main([*args, "--set", "train.max_train_steps=3", "--resume", "latest"]) == 0
    # The resume loaded the trained UNet back: it ends where a straight 3-step run ends.
    straight = tmp_path / "straight"
    assert main([*[a if a != str(out) else str(straight) for a in args], "--set", "train.max_train_steps=3"]) == 0
    saved = load_file(out / "unet" / "diffusion_pytorch_model.safetensors")
    assert_same(saved, load_file(straight / "unet" / "diffusion_pytorch_model.safetensors"))

    fresh = load_components(tiny_model_config(), tmp_path / "a", seed=0)
    trained = load_components(tiny_model_config(unet=str(out / "unet"), adapter=str(out / "adapter")),
                              tmp_path / "b", seed=0)
    fresh_sd, trained_sd = fresh.unet.state_dict(), trained.unet.state_dict()
    assert fresh_sd.keys() == trained_sd.keys()  # the adapter's processors are installed in both
    base_keys = [k for k in fresh_sd if ".processor." not in k]
    assert any(not torch.equal(fresh_sd[k], trained_sd[k]) for k in base_keys)  # the 2D layers did train
    assert_same({k: trained_sd[k] for k in base_keys}, saved)  # and the trained weights are the ones loaded


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _perturbed(components):
    torch.manual_seed(0)
    with torch.no_grad():
        for p in components.adapter.parameters():
            p.add_(torch.randn_like(p) * 0.2)  # a fresh adapter's intensity values are zero: make them matter
    return components


@pytest.mark.parametrize("scale, differs", [(1.0, True), (0.0, False)])
def test_intensity_scale_zero_makes_the_unet_blind_to_intensity(tmp_path, scale, differs):
    from human_motion.model.components import load_components
    from human_motion.model.conditioning import MotionCharacterModel

    c = _perturbed(load_components(tiny_model_config(intensity_scale=scale), tmp_path, seed=0))
    model = MotionCharacterModel(c.unet, c.adapter).eval()
    gen = torch.Generator().manual_seed(0)
    cond = {"text_embeds": torch.randn(1, 77, 32, generator=gen), "id_embeds": torch.randn(1, 128, generator=gen),
            "clip_embeds": torch.randn(1, 17, 24, generator=gen), "action_embeds": torch.randn(1, 6, 32, generator=gen)}
    x = torch.randn(1, 4, 4, 16, 16, generator=gen)
    with torch.no_grad():
        a = model(x, torch.tensor([500]), **cond, intensity=torch.tensor([0.0]))
        b = model(x, torch.tensor([500]), **cond, intensity=torch.tensor([20.0]))
    assert (not torch.equal(a, b)) == differs


@pytest.mark.slow
def test_recipe_end_to_end_at_tiny_steps(demo_build, tmp_path):
    """build shards (the session's demo build) -> VAE -> two hm train runs -> pipeline sweep -> stats and plot."""
    spec = importlib.util.spec_from_file_location("intensity_control", ROOT / "benchmarks" / "intensity_control.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    work = tmp_path / "work"
    shutil.copytree(demo_build, work / "shards")
    plot = tmp_path / "plot.png"
    assert bench.main(["--work", str(work), "--steps", "2", "--vae-steps", "2", "--intensities", "0,20",
                       "--seeds", "0", "--photos", "astronaut", "--sample-steps", "2", "--threads", "1",
                       "--plot", str(plot)]) == 0
    results = json.loads((work / "results.json").read_text())
    assert plot.is_file()
    for name in ("with_module", "without_module"):
        assert len(results[name]["rows"]) == 2
        assert (work / name / "unet").is_dir()
    # The ablation cannot see the intensity: same seed, same video, whatever is asked.
    rows = results["without_module"]["rows"]
    assert rows[0]["measured"] == rows[1]["measured"]
