"""A clip that kills its Ray worker, for test_build: ``python -m tests.pipelines.poison OUT CLIP_ID [hm build args]``
runs ``hm build`` on a local Ray whose workers crash (SIGSEGV, as a native library would) whenever the faces
stage reaches the clip ``CLIP_ID``. The product code is untouched: the crash is installed by Ray's
``worker_process_setup_hook`` in every worker."""

from __future__ import annotations

import os
import pathlib
import signal
import sys

REPO = pathlib.Path(__file__).resolve().parents[2]


def install() -> None:
    """Runs in every Ray worker before it does anything else."""
    from human_motion.pipelines.faces import Faces

    target = os.environ["HM_TEST_POISON_CLIP"]
    original = Faces.process

    def process(self, row):
        if row.record.get("clip_id") == target:
            os.kill(os.getpid(), signal.SIGSEGV)
        return original(self, row)

    Faces.process = process


def main(argv: list[str]) -> int:
    import ray

    from human_motion.cli import main as hm

    out, clip_id, *rest = argv
    env = {"PYTHONPATH": str(REPO), "HM_TEST_POISON_CLIP": clip_id, "HF_HUB_OFFLINE": "1", "GLOG_minloglevel": "2"}
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": env, "worker_process_setup_hook": "tests.pipelines.poison.install"})
    return hm(["build", "--out", out, *rest])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
