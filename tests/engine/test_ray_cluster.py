"""The build on Ray as on a cluster: a head node that does no work and a worker node (ray.cluster_utils.Cluster on
this machine) gives exactly the in-process build's samples, and a worker killed while it writes a part or a shard
costs nothing: the retry writes the same files, none doubled, none left half written under a final name."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
import webdataset as wds

REPO = pathlib.Path(__file__).resolve().parents[2]
ARGS = ["--set", "sink.clips_per_shard=3", "--set", "sources.demo.options.pan_px=[0,5,10]",
        "--set", "sources.demo.options.zoom_pct=0", "--set", "sources.demo.options.rotate_deg=0",
        "--set", "progress=lines"]


def _samples(out: pathlib.Path) -> dict:
    index = pq.read_table(out / "index.parquet").to_pandas()
    return {r.key: (r.clip_id, r.window, round(r.intensity, 4), r.action) for r in index.itertuples()}


def _hm(out, *extra, env=None):
    run = subprocess.run([sys.executable, "-m", "human_motion.cli", "build", "--out", str(out), *ARGS, *extra],
                         env=env or dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True, text=True,
                         timeout=900, cwd=REPO)
    assert run.returncode == 0, run.stderr[-3000:]
    return run


@pytest.fixture(scope="module")
def in_process(tmp_path_factory):
    out = tmp_path_factory.mktemp("local") / "out"
    _hm(out, "--set", "ray.address=local")
    return _samples(out)


@pytest.mark.slow
def test_a_two_node_cluster_build_equals_the_in_process_build(tmp_path, in_process):
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})  # the driver's node does no work
    try:
        cluster.add_node(num_cpus=2)
        cluster.wait_for_nodes()
        out = tmp_path / "cluster"
        # Nothing the workers lack (the package is installed, the hub's mode unset): no runtime environment.
        env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
        run = _hm(out, "--ray-address", cluster.address, env=dict(env, PYTHONPATH=str(REPO)))
        assert _samples(out) == in_process
        assert "Ray" not in run.stderr.split("clips in")[0] or "WARNING" not in run.stderr  # quiet console
        keys = [s["__key__"] for s in wds.WebDataset(sorted(map(str, out.glob("0*.tar"))), shardshuffle=False)]
        assert sorted(keys) == sorted(in_process)
    finally:
        cluster.shutdown()


@pytest.mark.slow
@pytest.mark.parametrize("where", ["parts", "assemble"])
def test_a_worker_killed_while_it_writes_loses_and_doubles_nothing(tmp_path, in_process, where):
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    run = subprocess.run([sys.executable, "-m", "tests.engine.killer", str(out), where, *ARGS], env=env,
                         capture_output=True, text=True, timeout=900, cwd=REPO)
    assert run.returncode == 0, run.stderr[-3000:]
    assert pathlib.Path(f"{out}.killed").exists()  # a worker really died half way through a file
    assert _samples(out) == in_process
    keys = [s["__key__"] for s in wds.WebDataset(sorted(map(str, out.glob("0*.tar"))), shardshuffle=False)]
    assert sorted(keys) == sorted(in_process) and len(keys) == len(set(keys))
    assert not list(out.glob("*.tmp")) and not list(out.glob("_parts/*/*"))
