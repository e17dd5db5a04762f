"""``hm train`` that kills itself (SIGKILL) at a step the test names, for test_train: ``python -m
tests.model.kill_train STEP [hm train args]`` runs ``hm train`` in this process and sends itself SIGKILL right after
the log line of step STEP is written. The moment is the test's, not the clock's (no polling for a file); the product
code is untouched, the kill is installed on the run log's writer."""

from __future__ import annotations

import os
import signal
import sys


def main(argv: list[str]) -> int:
    from human_motion.cli import main as hm
    from human_motion.model import tracking

    step, *args = argv
    real = tracking.RunLog.__call__

    def log_then_kill(self, record: dict) -> None:
        real(self, record)
        if record.get("step") == int(step) and "loss" in record:
            os.kill(os.getpid(), signal.SIGKILL)

    tracking.RunLog.__call__ = log_then_kill
    return hm(["train", *args])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
