"""The build on Ray as on a cluster: a head node that does no work and two worker nodes (ray.cluster_utils.Cluster on
this machine) give exactly the in-process build's samples, both worker nodes doing part of the
work, on a corpus of many cheap rows (tiny videos rejected at the first select step) and a few real clips; and a
worker killed while it writes a part or a shard costs nothing: the retry writes the same files, none doubled, none
left half written under a final name."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
import webdataset as wds

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "sources"))

from corpora import FAST_SETS, write_face_video

REPO = pathlib.Path(__file__).resolve().parents[2]
REAL, CHEAP = 16, 240  # clips that become samples, and tiny ones rejected as low_resolution


def _args(root: pathlib.Path) -> list[str]:
    sets = dict(FAST_SETS, **{"sink.clips_per_shard": 64, "progress": "lines"})
    return ["--sources", f"folder={root}", *[x for k, v in sets.items() for x in ("--set", f"{k}={v}")]]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> pathlib.Path:
    root = tmp_path_factory.mktemp("cluster_corpus")
    for i in range(REAL):  # faces at several speeds, interleaved with the cheap rows in name order
        write_face_video(root / f"clip_{i * CHEAP // REAL:04d}_real.mp4")
    tiny = write_face_video(root / "tiny" / "seed.mp4", 48, 48)
    for i in range(CHEAP - 1):
        os.link(tiny, root / "tiny" / f"t{i:04d}.mp4")  # one file, many names: the cost is the engine's
    return root


def _samples(out: pathlib.Path) -> dict:
    index = pq.read_table(out / "index.parquet").to_pandas()
    return {r.key: (r.clip_id, r.window, round(r.intensity, 4), r.action) for r in index.itertuples()}


def _hm(out, args, *extra, env=None):
    run = subprocess.run([sys.executable, "-m", "human_motion.cli", "build", "--out", str(out), *args, *extra],
                         env=env or dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True, text=True, cwd=REPO)
    assert run.returncode == 0, run.stderr[-3000:]
    return run


@pytest.fixture(scope="module")
def in_process(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("local") / "out"
    _hm(out, _args(corpus), "--set", "ray.address=local")
    samples = _samples(out)
    assert len(samples) == REAL
    return samples


@pytest.mark.slow
def test_a_cluster_of_two_worker_nodes_builds_the_in_process_samples(tmp_path, corpus, in_process):
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    try:
        workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
        cluster.wait_for_nodes()
        out = tmp_path / "cluster"
        # Nothing the workers lack (the package is installed, the hub's mode unset): no runtime environment.
        env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
        run = _hm(out, _args(corpus), "--ray-address", cluster.address, env=dict(env, PYTHONPATH=str(REPO)))
        assert _samples(out) == in_process
        rejects = pq.read_table(out / "rejects.parquet").to_pandas()
        assert (rejects.reason == "low_resolution").sum() == CHEAP
        # Both worker nodes wrote rows (each shard's statistics count the rows per node); the head wrote none.
        by_node: dict[str, int] = {}
        for stats in json.loads((out / "manifest.json").read_text())["shards"].values():
            for node, rows in stats["nodes"].items():
                by_node[node] = by_node.get(node, 0) + rows
        assert set(by_node) == {w.node_id for w in workers}, (by_node, [w.node_id for w in workers])
        assert sum(by_node.values()) == REAL + CHEAP and min(by_node.values()) > 0
        # A quiet console: before the summary, only the build's own lines (no Ray banner, warning or log).
        before = run.stderr.split("clips in:")[0]
        assert all(line.startswith("hm build: ") for line in before.splitlines() if line.strip()), before[-2000:]
        # The nodes run their workers at Ray's default nice value, 15 (RAY_worker_niceness unset): the build says
        # that this costs them the CPU beside other work, once.
        assert before.count("start Ray with `RAY_worker_niceness=0 ray start") == 1, before[-2000:]
        keys = [s["__key__"] for s in wds.WebDataset(sorted(map(str, out.glob("0*.tar"))), shardshuffle=False)]
        assert sorted(keys) == sorted(in_process)
    finally:
        cluster.shutdown()


@pytest.mark.slow
@pytest.mark.parametrize("where", ["parts", "assemble"])
def test_a_worker_killed_while_it_writes_loses_and_doubles_nothing(tmp_path, corpus, in_process, where):
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    run = subprocess.run([sys.executable, "-m", "tests.engine.killer", str(out), where, *_args(corpus)], env=env,
                         capture_output=True, text=True, cwd=REPO)
    assert run.returncode == 0, run.stderr[-3000:]
    assert pathlib.Path(f"{out}.killed").exists()  # a worker really died half way through a file
    assert _samples(out) == in_process
    keys = [s["__key__"] for s in wds.WebDataset(sorted(map(str, out.glob("0*.tar"))), shardshuffle=False)]
    assert sorted(keys) == sorted(in_process) and len(keys) == len(set(keys))
    assert not list(out.glob("*.tmp")) and not list(out.glob("_parts/*/*"))
