"""A clip that kills its Ray worker, for test_build: ``python -m tests.engine.poison OUT CLIP_ID [hm build args]``
runs ``hm build`` on a local Ray whose workers crash (SIGSEGV, as a native library would) whenever the faces
stage reaches the clip ``CLIP_ID``. The product code is untouched: the crash is installed by Ray's
``worker_process_setup_hook`` in every worker.

With ``HM_TEST_POISON_STAGE=caption`` the crash is in the caption stage instead, as in a multimodal captioner
that captions a batch of rows in one call: a stand-in captioner answers every request, and the worker dies when
a batch that holds the clip is put in flight. Each crashed batch's clip ids are appended (a JSON list per line) to
``HM_TEST_POISON_LOG``."""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import signal
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[2]


class StandInCaptioner:
    """Takes the batched path of the caption stage (what a multimodal model does) without a model."""

    name = "stand-in"

    def caption_many(self, requests):
        from human_motion.backends.captioners import CaptionAnswer

        return [CaptionAnswer("keeping still", "A close-up video of a person keeping still.", 1, "") for _ in requests]


def _die() -> None:
    """SIGSEGV, as a native library would. The signal may be handled on another thread, so this one must not go
    on (and finish its rows in the journal) meanwhile."""
    os.kill(os.getpid(), signal.SIGSEGV)
    while True:
        time.sleep(1)


def install() -> None:
    """Runs in every Ray worker before it does anything else."""
    target = os.environ["HM_TEST_POISON_CLIP"]
    if os.environ.get("HM_TEST_POISON_STAGE") == "caption":
        _install_in_caption(target, os.environ["HM_TEST_POISON_LOG"])
        return
    from human_motion.stages.faces import Faces

    original = Faces.process

    def process(self, row):
        if row.clip_id == target:
            _die()
        return original(self, row)

    Faces.process = process


def _install_in_caption(target: str, log: str) -> None:
    import human_motion.stages.caption as caption

    caption.make_captioner = lambda cfg: StandInCaptioner()
    original = caption.Caption.in_flight

    @contextlib.contextmanager
    def in_flight(self, rows):
        with original(self, rows):
            clips = sorted({r.record.get("clip_id") for r in rows})
            if target in clips:
                with open(log, "a") as f:
                    f.write(json.dumps(clips) + "\n")
                _die()
            yield

    caption.Caption.in_flight = in_flight


def main(argv: list[str]) -> int:
    import ray

    from human_motion.cli import main as hm

    out, clip_id, *rest = argv
    env = {"PYTHONPATH": str(REPO), "HM_TEST_POISON_CLIP": clip_id, "HF_HUB_OFFLINE": "1", "GLOG_minloglevel": "2",
           **{k: v for k, v in os.environ.items() if k in ("HM_TEST_POISON_STAGE", "HM_TEST_POISON_LOG")}}
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": env, "worker_process_setup_hook": "tests.engine.poison.install"})
    return hm(["build", "--out", out, *rest])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
