"""User weight files are read as tensors only: a pickle that would run code is refused in one line, never run."""

from __future__ import annotations

import pathlib
import pickle

import pytest
import torch
from safetensors.torch import save_file

from human_motion.config import ConfigError
from human_motion.eval.weights import hf_model, load_weights


class Evil:
    def __reduce__(self):
        return (print, ("UNPICKLED",))


def test_weights_load_as_tensors_only(tmp_path, capsys):
    state = {"w": torch.arange(4.0)}
    torch.save({"state_dict": state, "epoch": 3}, tmp_path / "amt.pth")  # AMT's layout: plain containers are fine
    assert torch.equal(load_weights(str(tmp_path / "amt.pth"), "smoothness.amt_weights")["state_dict"]["w"], state["w"])
    save_file(state, tmp_path / "w.safetensors")
    assert torch.equal(load_weights(str(tmp_path / "w.safetensors"), "dover.weights")["w"], state["w"])

    (tmp_path / "evil.pth").write_bytes(pickle.dumps({"state_dict": Evil()}))
    with pytest.raises(ConfigError, match=r"dover.weights=.*evil.pth: cannot be read as weights only") as e:
        load_weights(str(tmp_path / "evil.pth"), "dover.weights")
    assert "\n" not in str(e.value) and "UNPICKLED" not in capsys.readouterr().out
    data = (tmp_path / "w.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ConfigError, match="not a readable safetensors file"):
        load_weights(str(tmp_path / "cut.safetensors"), "dynamic_degree.raft_weights")
    with pytest.raises(ConfigError, match="no such file"):
        load_weights(str(tmp_path / "none.pth"), "dover.weights")


def test_no_eval_module_unpickles():
    root = pathlib.Path(__file__).resolve().parents[2] / "human_motion" / "eval"
    assert not [p.name for p in root.glob("*.py") if "weights_only=False" in p.read_text()]


def test_a_missing_local_model_folder_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="no such folder"):
        hf_model(str(tmp_path / "clip"), "CLIP model", "clip.model")
    (tmp_path / "clip").mkdir()
    assert hf_model(str(tmp_path / "clip"), "CLIP model", "clip.model") == (str(tmp_path / "clip"), True)


def test_a_damaged_checkpoint_is_refused_in_one_line(tmp_path_factory, tmp_path, capsys):
    """`hm eval --protocol` on a run whose adapter weights were cut short."""
    import shutil

    import cv2
    import numpy as np

    from human_motion.cli import main
    from tests.model.tiny_run import tiny_run

    run = tmp_path / "run"
    shutil.copytree(tiny_run(tmp_path_factory), run)
    weights = run / "adapter" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    (tmp_path / "refs").mkdir()
    cv2.imwrite(str(tmp_path / "refs" / "a.png"), np.zeros((64, 64, 3), np.uint8))
    (tmp_path / "prompts.txt").write_text("a person\tsmiling\n")
    rc = main(["eval", "--protocol", "--checkpoint", str(run), "--refs", str(tmp_path / "refs"),
               "--prompts", str(tmp_path / "prompts.txt"), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err[-1].startswith(f"hm eval: error: --checkpoint {run}: cannot be loaded")
