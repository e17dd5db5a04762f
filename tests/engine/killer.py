"""Workers that are killed (SIGKILL) once while writing, for test_ray_cluster: ``python -m tests.engine.killer OUT
WHERE [hm build args]`` runs ``hm build`` on a local Ray whose workers kill themselves the first time they write
a part of a row (WHERE=parts) or a shard from its parts (WHERE=assemble), half way through the file. The kill
happens once per build (a marker file beside OUT records it); the product code is untouched, the kill is
installed by Ray's ``worker_process_setup_hook`` in every worker."""

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
    if where == "parts":
        real = writer.write_atomic

        def write_atomic(fs, path, data):
            if "/_parts/" in path:
                with fs.open(f"{path}.halfway.tmp", "wb") as f:  # half a file, under a temporary name
                    f.write(data[: len(data) // 2])
                _kill_once()
            return real(fs, path, data)

        writer.write_atomic = write_atomic
    else:
        real_add, real_assemble = writer._add_member, writer.assemble_shard
        assembling = []

        def assemble_shard(out, shard, expected):
            assembling.append(shard)  # only the shard assembler's writes are killed, not the part writers'
            try:
                return real_assemble(out, shard, expected)
            finally:
                assembling.pop()

        def add_member(tar, name, data):
            real_add(tar, name, data)
            if assembling and not name.startswith("__"):
                _kill_once()  # the shard's tar is half written under its temporary name

        writer._add_member = add_member
        writer.assemble_shard = assemble_shard


def main(argv: list[str]) -> int:
    import ray

    from human_motion.cli import main as hm

    out, where, *rest = argv
    env = {"PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "GLOG_minloglevel": "2", "HM_TEST_KILL_WHERE": where,
           "HM_TEST_KILL_MARKER": f"{out}.killed"}
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": env, "worker_process_setup_hook": "tests.engine.killer.install"})
    return hm(["build", "--out", out, *rest])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
