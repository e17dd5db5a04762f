"""The output can be any fsspec URL: a build into an S3-compatible server (moto's, started here on 127.0.0.1, reached
through s3fs exactly as a user reaches S3) gives the samples of a build on disk, resumes after a SIGKILL to exactly
those samples, and a rerun of the finished build rewrites nothing but the manifest."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

pytest.importorskip("s3fs")
pytest.importorskip("moto.server")

from tests.engine.test_build import _cmd, kill_when_held  # the demo build's command; the kill at a chosen moment

REPO = pathlib.Path(__file__).resolve().parents[2]
BUCKET = "hm-test"


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """(environment for a process that builds into s3://BUCKET, an s3fs filesystem on the same server)."""
    import logging

    import fsspec
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1",
           # fsspec reads FSSPEC_<PROTOCOL>_<ARGUMENT> into the filesystem's arguments (fsspec.config)
           "FSSPEC_S3_ENDPOINT_URL": f"http://{host}:{port}"}
    fs = fsspec.filesystem("s3", endpoint_url=env["FSSPEC_S3_ENDPOINT_URL"], key="test", secret="test")
    fs.mkdir(BUCKET)
    yield dict(os.environ, PYTHONPATH=str(REPO), **env), fs
    server.stop()


def _samples(fs, url: str) -> dict:
    import pyarrow.parquet as pq

    fs.invalidate_cache()  # s3fs caches listings: the build wrote from another process
    with fs.open(f"{url.removeprefix('s3://')}/index.parquet", "rb") as f:
        index = pq.read_table(f).to_pandas()
    return {r.key: (r.clip_id, r.window, round(r.intensity, 4), r.action) for r in index.itertuples()}


def _keys(fs, url: str) -> list[str]:
    import tarfile

    keys = []
    fs.invalidate_cache()
    for path in sorted(fs.glob(f"{url.removeprefix('s3://')}/0*.tar")):
        with fs.open(path, "rb") as f, tarfile.open(fileobj=f, mode="r|") as tar:
            keys += [m.name.split(".", 1)[0] for m in tar if m.name.endswith(".json")]
    return keys


@pytest.fixture(scope="module")
def on_disk(tmp_path_factory, s3):
    env, _ = s3
    out = tmp_path_factory.mktemp("disk") / "out"
    subprocess.run(_cmd(out, "--set", "ray.address=local"), check=True, env=env, capture_output=True)
    import pyarrow.parquet as pq

    index = pq.read_table(out / "index.parquet").to_pandas()
    return {r.key: (r.clip_id, r.window, round(r.intensity, 4), r.action) for r in index.itertuples()}


@pytest.mark.slow
def test_a_build_into_s3_resumes_after_a_kill_to_the_samples_on_disk(tmp_path, s3, on_disk):
    env, fs = s3
    url = f"s3://{BUCKET}/shards"
    marker = tmp_path / "marker"
    kill_when_held([sys.executable, "-m", "tests.engine.killer", url, "hold:3",
                    *_cmd(url, "--set", "ray.address=local")[6:]], marker, dict(env, HM_TEST_MARKER_BASE=str(marker)))
    fs.invalidate_cache()
    names = {p.rsplit("/", 1)[-1] for p in fs.find(f"{BUCKET}/shards")}
    assert "manifest.json" not in names and "_inputs.parquet" in names  # killed part way
    assert not [n for n in names if n.endswith(".tmp")]  # an object store gets no temporary names

    run = subprocess.run(_cmd(url, "--set", "ray.address=local"), env=env, capture_output=True, text=True, cwd=REPO)
    assert run.returncode == 0, run.stderr[-3000:]
    assert _samples(fs, url) == on_disk
    keys = _keys(fs, url)
    assert sorted(keys) == sorted(on_disk) and len(keys) == len(set(keys))
    assert not fs.find(f"{BUCKET}/shards/_parts")
    assert not (REPO / BUCKET).exists()

    before = {p: fs.info(p)["ETag"] for p in fs.find(f"{BUCKET}/shards") if not p.endswith("manifest.json")}
    again = subprocess.run(_cmd(url, "--set", "ray.address=local"), env=env, capture_output=True, text=True, cwd=REPO)
    assert again.returncode == 0, again.stderr[-3000:]
    fs.invalidate_cache()
    after = {p: fs.info(p)["ETag"] for p in fs.find(f"{BUCKET}/shards") if not p.endswith("manifest.json")}
    assert after == before  # a rerun of a finished build writes only its manifest
    manifest = json.loads(fs.cat(f"{BUCKET}/shards/manifest.json"))
    assert [r["shards_written"] for r in manifest["runs"]][-1] == 0


@pytest.mark.slow
def test_a_build_on_ray_writes_into_s3_from_its_workers(s3, on_disk):
    env, fs = s3
    url = f"s3://{BUCKET}/ray"
    run = subprocess.run(_cmd(url, "--set", "ray.num_cpus=2"), env=env, capture_output=True, text=True,
                         cwd=REPO)
    assert run.returncode == 0, run.stderr[-3000:]
    assert _samples(fs, url) == on_disk
    assert sorted(_keys(fs, url)) == sorted(on_disk)
    assert not (REPO / BUCKET).exists()  # the demo's media went to a local cache, not a folder named like the URL
