"""Does a sampling setting give the full model's fast faces back to dlib? The 1500-step full model (training seed
0) on the eight seen people, every action at asked 0 and 20, sampling seed 0 (64 clips a setting), measured with the
benchmark's own ``sweep`` and instrument, for each STEPS:GUIDANCE:ID_SCALE given (ID_SCALE: lambda of Eq. 3 at
sampling; the model trained with 1).

    .venv/bin/python benchmarks/results/2026-12-08-identity-sampling/sampling_knobs.py WORK OUT.json.gz \
        15:2:1 30:2:1 15:1:1 15:3.5:1 15:2:1.5

WORK: a finished ``identity_control.py`` work folder (its results.json names the people; WORK/full is the run).
Prints one line a setting; OUT holds every clip's row by setting.
"""

import gzip
import json
import pathlib
import sys
import time

import numpy as np
import torch

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))  # benchmarks/

import identity_control as ic  # noqa: E402
from identity_measure import IdentityInstrument  # noqa: E402
from identity_report import summarise  # noqa: E402
from motion_recipe import RES, load_pipeline  # noqa: E402
from motion_recipe import references as portraits  # noqa: E402


def summary(rows: list[dict], people: list[str], seen: list[str], asked: float) -> dict:
    """identity_report's own reading (the seen person a clip is nearest, no face counted wrong) at one ask."""
    rows = [r for r in rows if r["asked"] == asked]
    ident = summarise(rows, people, seen)["identity_seen"]
    return {"identity_accuracy": round(ident["accuracy"], 3), "face_similarity": round(ident["face_similarity"], 4),
            "no_face": ident["no_face"], "measured": round(float(np.mean([r["measured"] for r in rows])), 2),
            "action_accuracy": round(float(np.mean([r["found"] == r["action"] for r in rows])), 3) if asked else None}


def main() -> None:
    work, out, specs = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3:]
    torch.set_num_threads(2)
    done = json.loads((work / "results.json").read_text())
    people, seen = done["people"], done["seen"]
    instrument = IdentityInstrument(RES)
    refs = portraits(work, people)
    references = np.stack([instrument.reference(refs[p]) for p in people])
    pipe = load_pipeline(work / "full")
    results = {}
    for spec in specs:
        steps, guidance, id_scale = spec.split(":")
        pipe.adapter.set_scales(id_scale=float(id_scale))
        t0 = time.time()
        rows, _ = ic.sweep(pipe, refs, seen, [0.0, 20.0], [0], int(steps), float(guidance), instrument,
                           references, [0, 7])
        results[spec] = {"asked_0": summary(rows, people, seen, 0.0), "asked_20": summary(rows, people, seen, 20.0),
                         "seconds": round(time.time() - t0), "rows": rows}
        print(json.dumps({"steps:guidance:id_scale": spec, **{k: v for k, v in results[spec].items() if k != "rows"}}),
              flush=True)
    with gzip.open(out, "wt") as f:
        json.dump({"work": str(work), "people": people, "seen": seen, "settings": results}, f)


if __name__ == "__main__":
    main()
