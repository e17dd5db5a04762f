"""Starting, joining and stopping the Ray a build runs on, and what its workers get from this process's environment.

A runtime environment of any content makes Ray start workers of its own for it: the workers Ray keeps idle (one
per CPU) cannot serve the build's actors, which then wait for new processes. So a Ray this build starts gets no
runtime environment (its raylet inherits this process's environment), and a joined one gets only what its workers
would otherwise lack.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pathlib
import subprocess
import sys
import tempfile

from human_motion.config import ConfigError
from human_motion.engine.config import BuildConfig

CHECKOUT = pathlib.Path(__file__).resolve().parents[2]  # the folder that holds this human_motion package


def worker_environment(verbose: bool = False) -> dict[str, str]:
    """What Ray's workers need from this process's environment: this checkout on the path, the hub's offline mode
    and the native libraries' log levels."""
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(CHECKOUT), os.environ.get("PYTHONPATH")])),
            "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "0"),
            "GLOG_minloglevel": os.environ.get("GLOG_minloglevel", "2"),  # noqa: SIM112 - glog's own spelling
            "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3"),
            "HM_QUIET_NATIVE": "0" if verbose else "1"}


@contextlib.contextmanager
def _environ(values: dict[str, str]):
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def importable_without_path() -> bool:
    """Whether this interpreter, started in another folder without ``PYTHONPATH`` (as a Ray worker starts), imports
    this same human_motion: true for an installed or an editable (``pip install -e``) package. About 0.1 s."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    probe = "import sys, human_motion; sys.stdout.write(human_motion.__file__)"
    try:
        done = subprocess.run([sys.executable, "-c", probe], env=env, cwd=tempfile.gettempdir(), capture_output=True,
                              text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0 and pathlib.Path(done.stdout).resolve().parent == CHECKOUT / "human_motion"


def joined_runtime_env(verbose: bool = False) -> dict:
    """``ray.init`` arguments for a joined Ray's workers: with ``-v`` the whole ``worker_environment`` (its native
    logs shown); otherwise this checkout on the path only where the package is not installed, and the hub's offline
    mode only where it is set. Nothing else is needed there (their output is not shown, and the face models are
    quiet by default), and an empty set saves each build the start of its actors' processes (0.6-1.8 s of a
    12-15 s build of the dev clips on 2 cores, joined to a Ray left running by ``ray start``)."""
    if verbose:
        return {"runtime_env": {"env_vars": worker_environment(verbose=True)}}
    env = {}
    if not importable_without_path():
        env["PYTHONPATH"] = worker_environment()["PYTHONPATH"]
    if "HF_HUB_OFFLINE" in os.environ:
        env["HF_HUB_OFFLINE"] = os.environ["HF_HUB_OFFLINE"]
    return {"runtime_env": {"env_vars": env}} if env else {}


def init_ray(cfg: BuildConfig, verbose: bool = False):
    """Join the Ray at ``ray.address`` (or at ``RAY_ADDRESS``, as under ``ray job submit``), or else start a Ray of
    this build's own, even where a ``ray start`` one runs (join that with ``ray.address: auto``); Ray's own logging
    quiet unless verbose.

    A Ray started here gets its workers' environment through this process's own: they are children of its raylet,
    which inherits it at ``ray.init``. A joined Ray's workers get what they would lack as a runtime environment
    (``joined_runtime_env``)."""
    import ray

    if not ray.is_initialized():
        kwargs = dict(include_dashboard=False, log_to_driver=verbose, configure_logging=True,
                      logging_level=logging.INFO if verbose else logging.ERROR)
        address = cfg.ray.address or os.environ.get("RAY_ADDRESS") or None
        if address:
            try:
                ray.init(address=address, **joined_runtime_env(verbose), **kwargs)
            except ConnectionError as e:  # none running (auto), or nothing answers at host:port
                where = "ray.address" if cfg.ray.address else "RAY_ADDRESS"
                said = str(e).split(". ")[0].splitlines()[0].rstrip(".")  # Ray's first sentence; the rest is its CLI's
                raise ConfigError(f"{where} {address}: no Ray to join ({said}); start "
                                  f"one with `ray start --head` and join it with --ray-address auto, or unset {where} "
                                  "to let the build start a Ray of its own") from e
        else:
            # The raylet reads its settings from RAY_* variables at start: the workers' nice value among them.
            with _environ({**worker_environment(verbose), "RAY_worker_niceness": str(cfg.ray.worker_niceness)}):
                ray.init(address="local", num_cpus=cfg.ray.num_cpus,
                         object_store_memory=(cfg.ray.object_store_memory_mb or 0) * 2**20 or None, **kwargs)
    if not verbose:
        for name in ("ray", "ray.data", "ray.data._internal"):
            logging.getLogger(name).setLevel(logging.ERROR)
    return ray


def stop_ray() -> None:
    """Stop the Ray this process started (or leave a joined one), before the interpreter exits.

    Ray's ``shutdown`` stops its processes one after another, giving each a second to exit on SIGTERM. Its
    autoscaler monitor never takes it (its handler reports to the GCS, already stopped by then), so a second of every
    build went to waiting for it. The monitor of a Ray started here scales nothing and keeps nothing, so it is
    killed first. ``_global_node`` is Ray's own (private) handle on the processes it started; if a Ray version has
    none, ``shutdown`` is as before."""
    import ray

    if not ray.is_initialized():
        return
    node = getattr(ray._private.worker, "_global_node", None)
    for info in (getattr(node, "all_processes", None) or {}).get("monitor", ()):
        if info.process.poll() is None:
            info.process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):  # stuck in the kernel: shutdown reaps it later
                info.process.wait(timeout=5)
    ray.shutdown()
