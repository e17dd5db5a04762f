"""Which Ray a build uses, and how its workers get this process's environment, without starting one: ``ray.init``
is replaced by a recorder. Only stop_ray's test starts a Ray, its own, in a fresh interpreter."""

from __future__ import annotations

import os

import pytest

from human_motion.config import load_config
from human_motion.engine.config import BuildConfig
from human_motion.engine.ray_session import init_ray


@pytest.fixture
def recorded_init(monkeypatch):
    import ray

    calls = []

    def fake_init(**kwargs):
        calls.append({**kwargs, "environ": dict(os.environ)})

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", fake_init)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv("HM_QUIET_NATIVE", raising=False)
    return calls


def test_a_ray_of_its_own_gets_the_environment_through_this_process(recorded_init):
    cfg = load_config(BuildConfig, None, ["ray.num_cpus=3"])
    before = dict(os.environ)
    init_ray(cfg)
    (call,) = recorded_init
    assert call["address"] == "local" and call["num_cpus"] == 3  # never a `ray start` Ray joined by chance
    assert "runtime_env" not in call
    src = str(__import__("pathlib").Path(__file__).resolve().parents[2])
    assert call["environ"]["PYTHONPATH"].split(os.pathsep)[0] == src
    assert call["environ"]["HM_QUIET_NATIVE"] == "1"
    assert call["environ"]["RAY_worker_niceness"] == "0"  # the raylet's setting: workers at nice 0, not Ray's 15
    assert dict(os.environ) == before  # restored once Ray's processes have inherited it


@pytest.mark.parametrize("value", ["-1", "20"])
def test_a_nice_value_outside_0_19_is_refused(value):
    from human_motion.config import ConfigError

    with pytest.raises(ConfigError, match=f"ray.worker_niceness must be 0..19 .*not {value}"):
        load_config(BuildConfig, None, [f"ray.worker_niceness={value}"])


def test_a_set_nice_value_reaches_the_raylet(recorded_init):
    init_ray(load_config(BuildConfig, None, ["ray.worker_niceness=7"]))
    assert recorded_init[0]["environ"]["RAY_worker_niceness"] == "7"


@pytest.mark.parametrize("where", ["config", "environment"])
def test_a_joined_ray_gets_the_environment_as_a_runtime_environment(recorded_init, monkeypatch, where):
    if where == "config":
        cfg = load_config(BuildConfig, None, ["ray.address=10.1.2.3:6379"])
    else:  # as under `ray job submit`
        monkeypatch.setenv("RAY_ADDRESS", "10.1.2.3:6379")
        cfg = load_config(BuildConfig, None, [])
    init_ray(cfg, verbose=True)
    (call,) = recorded_init
    assert call["address"] == "10.1.2.3:6379" and "num_cpus" not in call
    env = call["runtime_env"]["env_vars"]
    assert env["HM_QUIET_NATIVE"] == "0" and "HF_HUB_OFFLINE" in env and env["PYTHONPATH"]


def test_a_joined_ray_gets_only_what_its_workers_would_lack(recorded_init, monkeypatch):
    """Without -v: nothing when the package is installed (so Ray's idle workers can serve the actors), the checkout
    when it is not, the hub's offline mode when it is set."""
    from human_motion.engine import ray_session

    cfg = load_config(BuildConfig, None, ["ray.address=auto"])
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    assert ray_session.importable_without_path()  # scripts/setup.sh installs the package (editable)
    init_ray(cfg)
    assert "runtime_env" not in recorded_init[-1]

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    init_ray(cfg)
    assert recorded_init[-1]["runtime_env"] == {"env_vars": {"HF_HUB_OFFLINE": "1"}}

    monkeypatch.setattr(ray_session, "importable_without_path", lambda: False)  # run from a checkout, not installed
    init_ray(cfg)
    env = recorded_init[-1]["runtime_env"]["env_vars"]
    assert env["PYTHONPATH"].split(os.pathsep)[0] == str(ray_session.CHECKOUT) and env["HF_HUB_OFFLINE"] == "1"


@pytest.mark.parametrize("where", ["config", "environment"])
def test_no_ray_to_join_is_one_line(tmp_path, monkeypatch, capsys, where):
    """--ray-address auto with no Ray running (or a host:port where none answers): one line naming the setting."""
    import ray

    from human_motion.cli import main

    def no_ray(**kwargs):
        raise ConnectionError("Could not find any running Ray instance. Please specify the one to connect to by "
                              "setting `--address` flag or `RAY_ADDRESS` environment variable.")

    monkeypatch.setattr(ray, "init", no_ray)
    base = ["build", "--out", str(tmp_path / "out"), "--set", "progress=off",
            "--set", "sources.demo.options.pan_px=[0]", "--set", "sources.demo.options.zoom_pct=0",
            "--set", "sources.demo.options.rotate_deg=0"]
    args = list(base)
    if where == "config":
        args += ["--ray-address", "auto"]
    else:
        monkeypatch.setenv("RAY_ADDRESS", "auto")
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    setting = "ray.address" if where == "config" else "RAY_ADDRESS"
    assert err.count("\n") == 0 and err.startswith(f"hm build: error: {setting} auto: no Ray to join")
    assert "ray start --head" in err
    assert main([*base, "--set", "ray.address=local"]) == 0  # the folder it began is finished in-process


def test_a_package_found_elsewhere_is_not_this_one(tmp_path, monkeypatch):
    """Another human_motion first on the interpreter's path (an older install, another checkout) is not this one."""
    from human_motion.engine import ray_session

    (tmp_path / "human_motion").mkdir()
    (tmp_path / "human_motion" / "__init__.py").write_text("")
    monkeypatch.setattr(ray_session, "CHECKOUT", tmp_path)
    assert not ray_session.importable_without_path()


STOP_RAY_SCRIPT = """
import json, ray
from human_motion.config import load_config
from human_motion.engine.config import BuildConfig
from human_motion.engine.ray_session import init_ray, stop_ray

assert not ray.is_initialized()
init_ray(load_config(BuildConfig, None, ["ray.num_cpus=1"]))
worker_nice = ray.get(ray.remote(lambda: __import__("os").nice(0)).remote())
node = ray._private.worker._global_node
procs = {kind: [info.process for info in infos] for kind, infos in node.all_processes.items()}
shutdown, at_shutdown = ray.shutdown, []

def recording_shutdown(*args, **kwargs):  # what has stopped when Ray's own shutdown begins
    at_shutdown.append(sorted(kind for kind, ps in procs.items() if ps and all(p.poll() is not None for p in ps)))
    return shutdown(*args, **kwargs)

ray.shutdown = recording_shutdown
stop_ray()
stopped = not ray.is_initialized()
stop_ray()  # a second call is no error
print(json.dumps({"stopped": stopped, "worker_nice": worker_nice,
                  "monitor": [p.returncode for p in procs.get("monitor", [])], "at_shutdown": at_shutdown,
                  "running": {kind: [p.pid for p in ps if p.poll() is None] for kind, ps in procs.items()},
                  "kinds": sorted(procs)}))
"""


def test_stop_ray_stops_every_process_of_a_ray_started_here():
    """Its workers run at nice 0 (``ray.worker_niceness``; Ray's own default is 15). The autoscaler monitor is
    killed before Ray's own shutdown (which would wait a second for it); every process the build's Ray started is
    gone afterwards, and a second call is no error. In a fresh interpreter, which starts and stops its own Ray,
    whatever Ray an earlier test left in this one."""
    import json
    import subprocess
    import sys

    src = str(__import__("pathlib").Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.run([sys.executable, "-c", STOP_RAY_SCRIPT], env=env, cwd=src, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["worker_nice"] == 0
    assert {"monitor", "raylet"} <= set(got["kinds"])  # what this test is about exists in this Ray version
    assert got["at_shutdown"] == [["monitor"]]  # killed before Ray's shutdown, which would wait on it
    assert got["stopped"] and got["monitor"] == [-9]
    assert got["running"] == {kind: [] for kind in got["kinds"]}
