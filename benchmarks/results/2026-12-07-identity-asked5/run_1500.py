"""How the "one 1500-step cycle" rows were made: ``identity_control.py --steps 1500 --slow-weight W``
(build, base, phi, the pixel bank and the ceiling, the shared start of 1000 steps on two people), with its five
runs replaced by the full model alone at training seeds 0 and 1 (side by side, one thread each), then
``sweep_run.py`` on each (side by side, one thread each); ~85 min on 2 cores from an empty WORK.

    .venv/bin/python benchmarks/results/2026-12-07-identity-asked5/run_1500.py WORK OUT_DIR [W]

W: 3 (default) writes weighted_1500_seed*.json.gz, 1 recipe_1500_seed*.json.gz (the same WORK serves both: only
the keys file and the two runs differ; give the second another WORK or remove full_seed*/ first).

The rows in rows/ were made by the same calls from a driver in /tmp (NOTE.md); this is that driver, tidied.
"""

import os
import pathlib
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

import identity_control as ic  # noqa: E402
from motion_recipe import train_runs  # noqa: E402


def main() -> None:
    work, out = pathlib.Path(sys.argv[1]).resolve(), pathlib.Path(sys.argv[2]).resolve()
    weight = float(sys.argv[3]) if len(sys.argv) > 3 else 3.0
    name = "weighted_1500" if weight == 3.0 else "recipe_1500" if weight == 1.0 else f"weight{weight:g}_1500"
    out.mkdir(parents=True, exist_ok=True)

    def full_model_only(work, variants, *args):
        if "pretrain" in variants:  # the shared start, as the benchmark trains it
            return train_runs(work, variants, *args)
        runs = train_runs(work, {f"full_seed{s}": [f"train.seed={s}"] for s in (0, 1)}, *args)
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        sweeps = [subprocess.Popen([sys.executable, str(HERE / "sweep_run.py"), str(work), str(run),
                                    str(out / f"{name}_seed{run.name[-1]}.json.gz"), "1"], env=env)
                  for run in runs.values()]
        if any([p.wait() for p in sweeps]):  # every sweep finishes before any failure is reported
            raise SystemExit("a sweep failed")
        raise SystemExit(0)  # no five runs, no report: summarise.py reads the rows

    ic.train_runs = full_model_only
    ic.main(["--work", str(work), "--steps", "1500", "--slow-weight", f"{weight:g}"])


if __name__ == "__main__":
    main()
