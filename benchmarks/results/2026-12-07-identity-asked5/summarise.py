"""The table of NOTE.md from the rows of each full-model sweep (rows/*.json.gz, written by sweep_run.py; the two
recipe runs' rows are their benchmark sweeps, <work>/sweeps/full.json), with identity_report's own summary.

    .venv/bin/python benchmarks/results/2026-12-07-identity-asked5/summarise.py
"""

import gzip
import json
import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402
from identity_report import headline, summarise  # noqa: E402
from sweep_run import PEOPLE  # noqa: E402

SEEN = [p for p in PEOPLE if p not in ("lp_d20", "group_0")]
RUNS = [  # (file, training seed, what)
    ("recipe_seed0", 0, "the recipe: 1000 steps"), ("recipe_seed1", 1, "the recipe: 1000 steps"),
    ("weighted_seed0", 0, "--slow-weight 3, 1000 steps"), ("weighted_seed1", 1, "--slow-weight 3, 1000 steps"),
    ("plus500_seed0", 0, "the recipe + 500 steps"), ("plus500_seed1", 1, "the recipe + 500 steps"),
    ("weighted_plus500_seed0", 0, "--slow-weight 3 + 500 steps"),
    ("weighted_plus500_seed1", 1, "--slow-weight 3 + 500 steps"),
    ("weighted_1500_seed0", 0, "--slow-weight 3, one 1500-step cycle"),
    ("weighted_1500_seed1", 1, "--slow-weight 3, one 1500-step cycle"),
    ("recipe_1500_seed0", 0, "one 1500-step cycle, no weighting"),
    ("recipe_1500_seed1", 1, "one 1500-step cycle, no weighting"),
    ("recipe_2000_seed0", 0, "one 2000-step cycle, no weighting (2026-12-08)"),
    ("recipe_2000_seed1", 1, "one 2000-step cycle, no weighting (2026-12-08)")]


def main() -> None:
    out = {}
    print("| full model | training seed | action accuracy (asked >= 5) | at asked 5 / 10 / 15 / 20 | "
          "intensity Spearman (worst person) | measured at asked 0 / 5 / 20 | identity, dlib (asked 0 -> 20) | "
          "face similarity, dlib, asked 0 -> 20 |")
    print("|---|---:|---:|---|---:|---|---:|---|")
    for name, seed, what in RUNS:
        path = HERE / "rows" / f"{name}.json.gz"
        if not path.exists():
            continue
        rows = json.loads(gzip.decompress(path.read_bytes()))
        summary = summarise(rows, PEOPLE, SEEN)
        h, by_level = headline(summary), summary["identity_seen"]["by_level"]
        acc = {a: float(np.mean([r["found"] == r["action"] for r in rows if r["asked"] == a])) for a in (5, 10, 15, 20)}
        meas = {a: float(np.mean([r["measured"] for r in rows if r["asked"] == a])) for a in (0, 5, 20)}
        ends = {a: by_level[a] for a in ("0", "20")}
        out[name] = {"seed": seed, "what": what, **h, "action_by_asked": acc, "measured_by_asked": meas,
                     "identity_by_asked": {a: v["accuracy"] for a, v in ends.items()},
                     "face_similarity_by_asked": {a: v["face_similarity"] for a, v in ends.items()}}
        print(f"| {what} | {seed} | {h['action_accuracy']:.3f} | {' / '.join(f'{v:.2f}' for v in acc.values())} | "
              f"{h['intensity_spearman']:.3f} ({h['intensity_spearman_min_person']:.3f}) | "
              f"{' / '.join(f'{v:.1f}' for v in meas.values())} | {h['identity_accuracy']:.3f} "
              f"({ends['0']['accuracy']:.2f} -> {ends['20']['accuracy']:.2f}) | "
              f"{ends['0']['face_similarity']:.3f} -> {ends['20']['face_similarity']:.3f} |")
    (HERE / "summary.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
