"""Workers that die, or stop, at a moment the test chooses: ``python -m tests.engine.killer OUT WHERE [hm build
args]`` runs ``hm build`` on a local Ray whose workers

- WHERE=parts / assemble: kill themselves (SIGKILL) the first time they write a part or a shard from its parts,
  half way through the file (test_ray_cluster). The kill happens once per build (a marker file ``OUT.killed``
  records it; ``HM_TEST_MARKER_BASE`` puts the markers elsewhere, as for an ``s3://`` OUT).
- WHERE=hold:N: stop for good when a process has written its N-th part: it writes ``OUT.held`` and blocks, so the
  build cannot end; the test, which waits for that file, then kills the whole build (test_build's SIGKILL test,
  test_object_store's resume). A build that reaches that moment is killed part way, never after its end.

With ``--set ray.address=local`` among the arguments the same is installed in this process (no Ray). The product
code is untouched: the hooks are installed by Ray's ``worker_process_setup_hook`` in every worker."""

from __future__ import annotations

import os
import pathlib
import signal
import sys

REPO = pathlib.Path(__file__).resolve().parents[2]


def _kill_once() -> None:
    marker = os.environ["HM_TEST_KILL_MARKER"]
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)  # the first worker to get here, only
    except FileExistsError:
        return
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    os.kill(os.getpid(), signal.SIGKILL)


def install() -> None:
    """Runs in every Ray worker before it does anything else."""
    from human_motion.engine import writer

    where = os.environ["HM_TEST_KILL_WHERE"]
    if where.startswith("hold:"):
        _install_hold(int(where.split(":")[1]))
    elif where == "parts":
        real = writer.write_atomic

        def write_atomic(fs, path, data):
            if "/_parts/" in path:
                with fs.open(f"{path}.halfway.tmp", "wb") as f:  # half a file, under a temporary name
                    f.write(data[: len(data) // 2])
                _kill_once()
            return real(fs, path, data)

        writer.write_atomic = write_atomic
    else:
        from human_motion.engine import shards

        real_tar_writer = shards.tar_writer  # used by the shard assembler only

        def tar_writer(fileobj):
            sink = real_tar_writer(fileobj)
            real_write = sink.write

            def write(sample):
                size = real_write(sample)
                _kill_once()  # the shard's tar is half written under its temporary name
                return size

            sink.write = write
            return sink

        shards.tar_writer = tar_writer


def _install_hold(n: int) -> None:
    import threading
    import time

    from human_motion.engine import writer

    real, lock, count = writer.write_atomic, threading.Lock(), [0]

    def write_atomic(fs, path, data):
        real(fs, path, data)
        if "/_parts/" in path:
            with lock:
                count[0] += 1
                if count[0] != n:
                    return
            try:
                fd = os.open(os.environ["HM_TEST_HOLD_MARKER"], os.O_CREAT | os.O_EXCL | os.O_WRONLY)
                os.close(fd)
            except FileExistsError:
                pass
            while True:  # hold the build here until the test kills it
                time.sleep(1)

    writer.write_atomic = write_atomic


def main(argv: list[str]) -> int:
    import ray

    from human_motion.cli import main as hm

    out, where, *rest = argv
    marker = os.environ.get("HM_TEST_MARKER_BASE", out)  # a local path beside OUT (OUT may be an s3:// URL)
    env = {"PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "GLOG_minloglevel": "2", "HM_TEST_KILL_WHERE": where,
           "HM_TEST_KILL_MARKER": f"{marker}.killed", "HM_TEST_HOLD_MARKER": f"{marker}.held"}
    if "ray.address=local" in rest:
        os.environ.update(env)
        install()
        return hm(["build", "--out", out, *rest])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": env, "worker_process_setup_hook": "tests.engine.killer.install"})
    return hm(["build", "--out", out, *rest])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
