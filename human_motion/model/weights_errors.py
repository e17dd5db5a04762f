"""One-line messages for weights that do not load (a pickle where safetensors belong, a damaged file)."""

from __future__ import annotations

import pathlib

from human_motion.config import ConfigError


def deepest_cause(error: BaseException) -> BaseException:
    while error.__cause__ or error.__context__:
        error = error.__cause__ or error.__context__
    return error


def weights_error(file: pathlib.Path, error: BaseException) -> ConfigError:
    """One line for a weights file that does not load: a pickle where safetensors belong, or a damaged file."""
    try:
        with open(file, "rb") as f:
            head = f.read(4)
    except OSError:
        head = b""
    if head.startswith(b"PK\x03\x04") or head[:1] == b"\x80":  # torch.save's zip, or a raw pickle
        what = "is a pickle (torch.save), not safetensors; pickles are never loaded"
    else:
        inner = deepest_cause(error)
        what = f"is not a complete safetensors file ({' '.join(str(inner).split()) or type(inner).__name__})"
    return ConfigError(f"{file} {what}: copy the checkpoint again, or save it again with `hm train` or save_pretrained")
