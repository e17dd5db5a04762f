"""Which Ray a build uses, and how its workers get this process's environment, without starting one: ``ray.init``
is replaced by a recorder."""

from __future__ import annotations

import os

import pytest

from human_motion.config import load_config
from human_motion.engine.config import BuildConfig
from human_motion.engine.executors import init_ray


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
    assert dict(os.environ) == before  # restored once Ray's processes have inherited it


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


def test_stop_ray_stops_every_process_of_a_ray_started_here():
    """The autoscaler monitor is killed before Ray's own shutdown (which would wait a second for it); every process
    the build's Ray started is gone afterwards, and a second call is no error."""
    import ray

    from human_motion.engine.executors import stop_ray

    if ray.is_initialized():
        pytest.skip("a Ray from an earlier test is still up in this process")
    init_ray(load_config(BuildConfig, None, ["ray.num_cpus=1"]))
    node = ray._private.worker._global_node
    procs = {kind: [info.process for info in infos] for kind, infos in node.all_processes.items()}
    assert procs.get("monitor") and procs.get("raylet")  # what this test is about exists in this Ray version
    stop_ray()
    assert not ray.is_initialized()
    for kind, ps in procs.items():
        for p in ps:
            assert p.poll() is not None, f"{kind} still running"
    assert procs["monitor"][0].returncode == -9  # killed, not waited on
    stop_ray()
