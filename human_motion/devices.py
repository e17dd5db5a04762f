"""Device and precision names of the configs (``device: auto|cpu|cuda``, ``precision/dtype: fp32|fp16|bf16``),
resolved in one place. torch is imported only when called."""

from __future__ import annotations


def auto_device(device: str) -> str:
    """``auto`` -> ``cuda`` when a CUDA device is visible, else ``cpu``; any other name is returned as given."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def torch_dtype(name: str):
    """``fp32`` / ``fp16`` / ``bf16`` -> the torch dtype; KeyError for any other name."""
    import torch

    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[name]
