"""``hm model-info``: parameters by default without running a forward; FLOPs only on request (--flops)."""

from __future__ import annotations

import json

import pytest
import torch

from human_motion.cli import main


def test_parameters_only_by_default(capsys, monkeypatch):
    import human_motion.model.info as info

    def no_forward(*args, **kwargs):
        raise AssertionError("FLOPs were counted without --flops")

    monkeypatch.setattr(info, "_flops", no_forward)
    assert main(["model-info", "--config", "train_tiny", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert not any(k.startswith("gflops") for row in rows.values() for k in row)
    # Counted independently: train_tiny trains the adapter alone, and every weight of the model is in one row.
    adapter, everything = tiny_run_parameter_counts()
    assert sum(r["trainable"] for r in rows.values()) == adapter
    assert sum(r["trainable"] + r["frozen"] for r in rows.values()) == everything
    assert rows["adapter: id projector"]["trainable"] > 0 and rows["vae"]["trainable"] == 0 < rows["vae"]["frozen"]
    assert main(["model-info", "--config", "train_tiny"]) == 0
    table = capsys.readouterr().out
    assert "GFLOPs" not in table and table.splitlines()[-1].startswith("total")


def tiny_run_parameter_counts() -> tuple[int, int]:
    """(the adapter's parameters, every parameter of every component) of train_tiny's model."""
    import tempfile

    from human_motion.config import load_config, packaged_config
    from human_motion.model.components import load_components
    from human_motion.model.config import TrainConfig

    cfg = load_config(TrainConfig, packaged_config("train_tiny"), [])
    with tempfile.TemporaryDirectory() as tmp:
        c = load_components(cfg.model, tmp, cfg.train.seed)
    parts = [c.unet, c.adapter, c.vae, c.text_encoder, c.image_encoder]
    unique = {id(p): p for part in parts for p in part.parameters()}
    return sum(p.numel() for p in c.adapter.parameters()), sum(p.numel() for p in unique.values())


def test_flops_on_request(capsys):
    assert main(["model-info", "--config", "train_tiny", "--json", "--flops"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows["unet (SD 2D layers)"]["gflops_whole_unet"] > 0 and rows["vae"]["gflops_decode"] > 0


def test_help_shows_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["model-info", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: train)" in text and "default: parameters only" in text


def test_fused_attention_is_counted():
    """SDPA is one fused op that ptflops does not know unless its math path runs. 8 heads of 1024 tokens x 64 dims:
    QK^T and the weighted sum are 1024 x 1024 x 64 x 8 multiply-accumulates each, 2 FLOPs a multiply-accumulate."""
    import torch.nn.functional as F

    from human_motion.model.info import _flops

    q = torch.randn(1, 8, 1024, 64)
    attention = _flops(lambda q: F.scaled_dot_product_attention(q, q, q), [], {"q": q})
    assert attention == 2 * 2 * 1024 * 1024 * 64 * 8
