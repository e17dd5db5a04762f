"""Where ``hm eval``'s models come from, without surprises: nothing is downloaded when the machine is offline, a hub
that cannot be reached is tried once, and user weight files are read as tensors only (never unpickled).

A metric whose model is not here is *skipped*: :class:`Unavailable` carries the reason and the setting that would
enable it, and ``hm eval`` reports it in the table instead of stopping. Offline means ``HF_HUB_OFFLINE=1`` (the
variable every Hugging Face library honours); it also keeps torchvision's and insightface's downloads from starting.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import pickle
import sys
import urllib.parse

from human_motion.config import ConfigError

TRUE = {"1", "ON", "YES", "TRUE"}


class Unavailable(Exception):
    """A metric's model is not on this machine and cannot be fetched now; ``str()`` says why and what enables it."""


def hub_offline() -> bool:
    """``HF_HUB_OFFLINE`` as set now (huggingface_hub reads it once at import; a test or a script may set it later)."""
    from huggingface_hub import constants

    return os.environ.get("HF_HUB_OFFLINE", "").upper() in TRUE or bool(constants.HF_HUB_OFFLINE)


def looks_local(name: str) -> bool:
    """A path the user means as a folder (absolute, ``./``, ``../``, ``~``), not a hub id like ``org/model``."""
    return name.startswith(("/", "./", "../", "~", ".\\")) or os.path.isabs(name)


def hf_model(name: str, what: str, setting: str) -> tuple[str, bool]:
    """(name or folder, local_files_only) for ``from_pretrained``. A hub id that is not in the cache is skipped
    offline without touching the network; online it gets one try (the caller turns a failure into Unavailable)."""
    path = pathlib.Path(name).expanduser()
    if path.exists():
        return str(path), True
    if looks_local(name):
        raise ConfigError(f"{setting}={name}: no such folder; it cannot be loaded. Give a folder holding the {what} "
                          "(save_pretrained) or a hub id")
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache(name, "config.json"), str):
        return name, True
    if hub_offline():
        raise Unavailable(f"{what} {name!r} is not in the Hugging Face cache and HF_HUB_OFFLINE=1 (no download "
                          f"tried); download it once (`hf download {name}`) or --set {setting}=/path/to/folder")
    return name, False


def first_line(e: BaseException) -> str:
    return f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:400]}"


def torchvision_weights(enum, setting: str):
    """The state dict of a torchvision weights enum: from torch's cache, else one download (online only), with
    torch.hub's "Downloading ..." kept off stdout (``hm eval`` prints its results there)."""
    import torch

    filename = os.path.basename(urllib.parse.urlparse(enum.url).path)
    cached = pathlib.Path(torch.hub.get_dir()) / "checkpoints" / filename
    how = (f"save its state dict on a machine with network (torch.save(model.state_dict(), 'x.pth')) and "
           f"--set {setting}=x.pth")
    if not cached.is_file() and hub_offline():
        raise Unavailable(f"torchvision's {enum} weights are not in torch's cache ({cached}) and HF_HUB_OFFLINE=1 "
                          f"(no download tried); {how}")
    try:
        with contextlib.redirect_stdout(sys.stderr):  # = enum.get_state_dict(), through torch.hub's own function
            return torch.hub.load_state_dict_from_url(enum.url, progress=False, check_hash=True)
    except OSError as e:  # URLError, timeouts, a refused connection: one try, then the metric is skipped
        raise Unavailable(f"torchvision's {enum} weights could not be downloaded ({first_line(e)}); {how}") from None


def load_weights(path: str, setting: str) -> dict:
    """A state dict from a user file: ``.safetensors``, or a torch file read with ``weights_only=True`` (tensors and
    plain containers only: a file that needs more is refused, never unpickled)."""
    import torch

    p = pathlib.Path(path).expanduser()
    if not p.is_file():
        raise ConfigError(f"{setting}={path}: no such file")
    if p.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(p))
        except SafetensorError as e:
            raise ConfigError(f"{setting}={path}: not a readable safetensors file ({first_line(e)})") from None
    try:
        return torch.load(str(p), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as e:
        raise ConfigError(f"{setting}={path}: cannot be read as weights only ({first_line(e)}); it holds objects "
                          "that would have to be unpickled, which hm eval never does: convert it to .safetensors, or "
                          "save the state dict alone with torch.save") from None
