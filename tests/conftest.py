"""Shared fixtures. No network: hub calls are off, and every model is either shipped by a package or built here."""

from __future__ import annotations

import os
import pathlib

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GLOG_minloglevel", "2")  # mediapipe's C++ warnings
os.environ.setdefault("RAY_DEDUP_LOGS", "1")

DEV_DATA = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data" / "dev"


@pytest.fixture(scope="session")
def dev_data() -> pathlib.Path:
    """The real face media of ../shared/data/dev (never copied into the repository)."""
    if not DEV_DATA.is_dir():
        pytest.skip(f"needs the development media folder {DEV_DATA} (../shared/data/dev beside the checkout)")
    return DEV_DATA


def small_build_config(**sets):
    """A BuildConfig for a small, fast demo build run in this process (no Ray start-up)."""
    from human_motion.config import load_config
    from human_motion.engine.config import BuildConfig

    base = {
        "sources": {"demo": {"options": {"pan_px": [0, 4, 12], "zoom_pct": 0, "rotate_deg": 3}}},
        "sink": {"clips_per_shard": 3},
        "ray": {"address": "local", "progress": False},
    }
    return load_config(BuildConfig, None, [f"{k}={v}" for k, v in sets.items()], base=base)


@pytest.fixture(scope="session")
def demo_build(tmp_path_factory) -> pathlib.Path:
    """Shards of a small demo build (7 video clips and portraits, 2 rejected photos), made once per session.
    Treat it as read-only; copy it to change it."""
    from human_motion.engine.build import build

    out = tmp_path_factory.mktemp("demo_build")
    build(small_build_config(), str(out))
    return out


def pytest_collection_modifyitems(config, items):
    """Tests marked ``gpu`` run only where CUDA is available."""
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    if has_cuda:
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
