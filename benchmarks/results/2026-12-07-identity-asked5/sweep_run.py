"""The benchmark's full-model sweep on one trained run: ten people x 4 actions x asked 0/5/10/15/20 x sampling
seeds 0 and 1, 15 DDIM steps, guidance 2, measured by identity_control's own instruments; rows written gzipped.
Where WORK holds the pixel instrument's bank (<work>/sweeps/bank.npz, which identity_control.py writes before the
shared start) each row also gets ``pixel_sims``, as in the benchmark's results.json (the 1500-step rows; the
earlier rows were swept without it).

    .venv/bin/python benchmarks/results/2026-12-07-identity-asked5/sweep_run.py WORK RUN OUT.json.gz [THREADS]

WORK: the identity_control run whose people and base RUN was trained on (its portraits are the references).
"""

import gzip
import json
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))

import numpy as np
import torch
from identity_control import add_pixel_sims, saved_bank, sweep
from identity_measure import IdentityInstrument, PixelIdentity
from motion_recipe import RES, load_pipeline
from motion_recipe import references as portraits

PEOPLE = ["astronaut", "hopper", "lp_d10", "lp_s20", "lp_s29", "aoc", "tpsmm", "group_2", "lp_d20", "group_0"]


def main() -> None:
    work, run, out = (pathlib.Path(a) for a in sys.argv[1:4])
    torch.set_num_threads(int(sys.argv[4]) if len(sys.argv) > 4 else 2)
    instrument = IdentityInstrument(RES)
    refs = portraits(work, PEOPLE)
    references = np.stack([instrument.reference(refs[p]) for p in PEOPLE])
    t0 = time.time()
    rows, clips = sweep(load_pipeline(run), refs, PEOPLE, [0.0, 5.0, 10.0, 15.0, 20.0], [0, 1], 15, 2.0,
                        instrument, references, [0, 7])
    bank = saved_bank(work / "sweeps" / "bank.npz", PEOPLE)
    if bank is not None:
        add_pixel_sims(rows, clips, PixelIdentity(bank, PEOPLE))
    out.write_bytes(gzip.compress(json.dumps(rows).encode(), mtime=0))
    print(f"{len(rows)} clips in {time.time() - t0:.0f} s -> {out}")


if __name__ == "__main__":
    main()
