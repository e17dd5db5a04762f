"""``hm model-info --config train``: parameters (trainable and frozen) per component, and with ``--flops`` the
forward FLOPs of each.

Counts come from the same ``load_components`` the trainer uses (so they match what trains); FLOPs from ptflops'
``aten`` backend, which counts every matmul/conv the forward runs (attention through SDPA's math path, so its
matmuls are counted) at the config's resolution and frame count, batch 1. ``random-sd15`` gives the paper's sizes
without downloading weights.
"""

from __future__ import annotations

import json
import tempfile

import torch
from torch import nn

from human_motion.config import load_config, resolve_config_path
from human_motion.model.adapter import set_trainable
from human_motion.model.components import load_components
from human_motion.model.config import TrainConfig


def add_arguments(parser) -> None:
    from human_motion.config import DefaultsHelpFormatter

    parser.formatter_class = DefaultsHelpFormatter
    parser.add_argument("--config", default="train", help="config file or packaged name (train, train_tiny, ...)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value (default: none)")
    parser.add_argument("--flops", action="store_true",
                        help="also count forward FLOPs per component: runs each forward once at the config's "
                             "frames and resolution (seconds on train_tiny, a GPU-sized machine for train; "
                             "default: parameters only)")
    parser.add_argument("--no-flops", action="store_false", dest="flops",
                        help="parameters only (the default; kept for older scripts)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table (default: a table)")


def _params(module: nn.Module, exclude: set[int] = frozenset()) -> tuple[int, int]:
    trainable = frozen = 0
    for p in {id(p): p for p in module.parameters()}.values():
        if id(p) in exclude:
            continue
        trainable += p.numel() if p.requires_grad else 0
        frozen += 0 if p.requires_grad else p.numel()
    return trainable, frozen


class _Call(nn.Module):
    """Wraps one component's forward so ptflops sees a plain ``module(**inputs)``."""

    def __init__(self, fn, modules: list[nn.Module]):
        super().__init__()
        self.fn, self.parts = fn, nn.ModuleList(modules)

    def forward(self, **inputs):
        return self.fn(**inputs)


def _flops(fn, modules, inputs: dict) -> int:
    """Forward FLOPs of ``fn(**inputs)``. Attention runs as SDPA's math path, whose matmuls ptflops counts; the fused
    kernels PyTorch would otherwise pick (flash, memory-efficient, the CPU's) are single ops it does not know."""
    from ptflops import get_model_complexity_info
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH):
        macs, _ = get_model_complexity_info(
            _Call(fn, modules), (1,), input_constructor=lambda _: inputs, as_strings=False,
            print_per_layer_stat=False, backend="aten",
        )
    return int(2 * macs)  # ptflops counts multiply-accumulates; a MAC is 2 FLOPs


def model_info(cfg: TrainConfig, flops: bool = False) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        c = load_components(cfg.model, tmp, cfg.train.seed)
    set_trainable(c.unet, c.adapter, cfg.model.train_motion_modules)
    adapter_ids = {id(p) for p in c.adapter.parameters()}
    motion_ids = {id(p) for n, p in c.unet.named_parameters() if ".motion_modules." in n}
    motion_modules = [p for n, p in c.unet.named_parameters() if ".motion_modules." in n]
    rows = {
        "unet (SD 2D layers)": _params(c.unet, adapter_ids | motion_ids),
        "motion modules": (sum(p.numel() for p in motion_modules if p.requires_grad),
                           sum(p.numel() for p in motion_modules if not p.requires_grad)),
        "adapter: id projector": _params(c.adapter.id_projector),
        "adapter: intensity embedding": _params(c.adapter.intensity_embedding),
        "adapter: attention processors": _params(c.adapter.processors),
        "vae": _params(c.vae),
        "text encoder": _params(c.text_encoder),
        "image encoder": _params(c.image_encoder),
    }
    out = {name: {"trainable": t, "frozen": f} for name, (t, f) in rows.items()}
    if flops:
        d, m = cfg.data, cfg.model
        f, r = d.num_frames, d.resolution
        down = 2 ** (len(c.vae.config.block_out_channels) - 1)
        width = c.text_encoder.config.hidden_size
        n_tokens = c.tokenizer.model_max_length + m.num_id_tokens + m.num_action_tokens + m.num_intensity_tokens
        size = c.image_encoder.config.image_size
        unet_in = {"sample": torch.randn(1, 4, f, r // down, r // down), "timestep": torch.tensor([500]),
                   "encoder_hidden_states": torch.randn(f, n_tokens, width)}
        ids = torch.zeros(1, c.tokenizer.model_max_length, dtype=torch.long)
        unet_flops = _flops(lambda **x: c.unet(**x).sample, [c.unet], unet_in)
        out["unet (SD 2D layers)"]["gflops_whole_unet"] = unet_flops / 1e9
        out["vae"]["gflops_encode"] = _flops(lambda x: c.vae.encode(x).latent_dist.mean, [c.vae],
                                             {"x": torch.randn(f, 3, r, r)}) / 1e9
        out["vae"]["gflops_decode"] = _flops(lambda z: c.vae.decode(z).sample, [c.vae],
                                             {"z": torch.randn(f, 4, r // down, r // down)}) / 1e9
        out["text encoder"]["gflops"] = _flops(lambda ids: c.text_encoder(ids)[0], [c.text_encoder], {"ids": ids}) / 1e9
        out["image encoder"]["gflops"] = _flops(lambda x: c.image_encoder(x)[0], [c.image_encoder],
                                                {"x": torch.randn(1, 3, size, size)}) / 1e9
        out["adapter: id projector"]["gflops"] = _flops(
            c.adapter.id_projector, [c.adapter.id_projector],
            {"id_embeds": torch.randn(1, m.id_embedding_dim),
             "clip_embeds": torch.randn(1, (size // c.image_encoder.config.patch_size) ** 2 + 1,
                                        c.image_encoder.config.hidden_size)}) / 1e9
        out["adapter: intensity embedding"]["gflops"] = _flops(
            c.adapter.intensity_embedding, [c.adapter.intensity_embedding], {"intensity": torch.tensor([5.0])}) / 1e9
        out["adapter: attention processors"]["gflops"] = "inside the unet's count"
    return out


def run(args) -> int:
    cfg = load_config(TrainConfig, resolve_config_path(args.config), args.set)
    info = model_info(cfg, flops=args.flops)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    flops = (f"  GFLOPs (batch 1, {cfg.data.num_frames}x{cfg.data.resolution}x{cfg.data.resolution})"
             if args.flops else "")
    print(f"{'component':32s} {'trainable':>14s} {'frozen':>14s}{flops}")
    for name, row in info.items():
        g = ", ".join(f"{k.removeprefix('gflops').strip('_') or 'forward'} {v:.4g}" if isinstance(v, float) else str(v)
                      for k, v in row.items() if k.startswith("gflops"))
        print(f"{name:32s} {row['trainable']:>14,d} {row['frozen']:>14,d}  {g}")
    total_t = sum(r["trainable"] for r in info.values())
    total_f = sum(r["frozen"] for r in info.values())
    print(f"{'total':32s} {total_t:>14,d} {total_f:>14,d}")
    return 0
