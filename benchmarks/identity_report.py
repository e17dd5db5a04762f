"""Summaries, tables and aims of ``identity_control.py`` (pure functions of the measured rows).

A row is one generated clip: person, action, asked intensity, seed, and what the instruments found: ``sims`` (mean
dlib cosine with every person's reference, in ``people`` order), ``measured`` intensity, ``found`` kind of motion,
``face_motion``. A seen person's clip shows the seen person whose reference is most similar (the model was trained
on those; chance is 1 / number seen); an unseen person's clip is compared with its own reference and the nearest
seen person's.
"""

from __future__ import annotations

import pathlib

import numpy as np

from identity_measure import binomial_chance_interval, paired_bootstrap, wilson_interval
from motion_recipe import stats

from human_motion.eval.motion_kind import KINDS, confusion

MIN_ASKED_FOR_KIND = 5.0
# The paper's numbers, for direction only (DESIGN.md, issue 28): Table 1 (MotionCharacter) and Table 2's deltas.
PAPER = {"face_similarity": 0.609, "dynamic_degree": 0.449, "l_id_face_similarity_gain": 0.104,
         "l_r_dynamic_degree_gain": 0.064, "l_r_dover_gain": 0.059}
TABLE2 = {"neither": "no loss", "no_lr": "L_id", "no_lid": "L_R", "full": "L_id + L_R (full)"}
# Each loss's effect: the model with it minus the same model without it, on the clips both made.
EFFECTS = {"L_id on face similarity, with L_R (full - no_lid)": ("full", "no_lid", "own_sim"),
           "L_id on face similarity, without L_R (no_lr - neither)": ("no_lr", "neither", "own_sim"),
           "L_R on face-region motion, with L_id (full - no_lr)": ("full", "no_lr", "face_motion"),
           "L_R on face-region motion, without L_id (no_lid - neither)": ("no_lid", "neither", "face_motion")}


def _identify(rows: list[dict], people: list[str], seen: list[str]) -> None:
    """Adds ``shown`` (the seen person the clip shows, None without a face), ``own_sim`` and, for everyone, the most
    similar *other* seen person (``nearest_seen``, ``nearest_seen_sim``) to each row."""
    seen_idx = [people.index(p) for p in seen]
    for r in rows:
        if r["sims"] is None:
            r.update(shown=None, own_sim=None, nearest_seen=None, nearest_seen_sim=None)
            continue
        sims = np.asarray(r["sims"])
        r["shown"] = seen[int(np.argmax(sims[seen_idx]))]
        r["own_sim"] = float(sims[people.index(r["person"])])
        others = [i for i in seen_idx if people[i] != r["person"]]
        best = max(others, key=lambda i: sims[i])
        r["nearest_seen"], r["nearest_seen_sim"] = people[best], float(sims[best])


def _level(row: dict) -> float:
    """The asked intensity a row is grouped by: its ``level`` (a training clip's nominal speed) or what was asked."""
    return row.get("level", row["asked"])


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def identity_block(rows: list[dict]) -> dict:
    """Identity accuracy (with its Wilson interval), face similarity and the nearest other person's, overall and
    per asked intensity, for rows of seen people."""
    correct = sum(r["shown"] == r["person"] for r in rows)
    out = {"n": len(rows), "correct": correct, "accuracy": correct / len(rows) if rows else None,
           "accuracy_ci95": wilson_interval(correct, len(rows)), "no_face": sum(r["sims"] is None for r in rows),
           "face_similarity": _mean(r["own_sim"] for r in rows),
           "nearest_other_similarity": _mean(r["nearest_seen_sim"] for r in rows), "by_level": {}}
    for v in sorted({_level(r) for r in rows}):
        mine = [r for r in rows if _level(r) == v]
        out["by_level"][f"{v:g}"] = {"n": len(mine), "accuracy": float(np.mean([r["shown"] == r["person"]
                                                                                for r in mine])),
                                     "face_similarity": _mean(r["own_sim"] for r in mine)}
    return out


def motion_block(rows: list[dict], people: list[str]) -> dict:
    """Action accuracy (asked >= 5) and its confusion, intensity Spearman and MAE pooled, per person and per action,
    face-region motion overall and per asked intensity."""
    moving = [r for r in rows if r["asked"] >= MIN_ASKED_FOR_KIND]
    conf = confusion([r["action"] for r in moving], [r["found"] for r in moving])
    by_person = {p: stats([r["asked"] for r in rows if r["person"] == p], [r["measured"] for r in rows
                                                                           if r["person"] == p])
                 for p in people if any(r["person"] == p for r in rows)}
    by_action = {k: stats([r["asked"] for r in rows if r["action"] == k], [r["measured"] for r in rows
                                                                          if r["action"] == k])
                 for k in KINDS if any(r["action"] == k for r in rows)}
    levels = sorted({_level(r) for r in rows})
    return {"action_accuracy": conf["accuracy"], "confusion": conf,
            "intensity_pooled": stats([r["asked"] for r in rows], [r["measured"] for r in rows]),
            "intensity_by_person": by_person, "intensity_by_action": by_action,
            "measured_mean_by_level": {f"{v:g}": _mean(r["measured"] for r in rows if _level(r) == v)
                                       for v in levels},
            "face_motion": _mean(r["face_motion"] for r in rows),
            "face_motion_by_level": {f"{v:g}": _mean(r["face_motion"] for r in rows if _level(r) == v)
                                     for v in levels}}


def unseen_block(rows: list[dict]) -> dict:
    out = {}
    for p in sorted({r["person"] for r in rows}):
        mine = [r for r in rows if r["person"] == p and r["sims"] is not None]
        nearest = [r["nearest_seen"] for r in mine]
        out[p] = {"n": len(mine), "face_similarity": _mean(r["own_sim"] for r in mine),
                  "nearest_seen_similarity": _mean(r["nearest_seen_sim"] for r in mine),
                  "nearest_seen": max(set(nearest), key=nearest.count) if nearest else None,
                  "own_reference_wins": float(np.mean([r["own_sim"] > r["nearest_seen_sim"] for r in mine]))
                  if mine else None}
    return out


def summarise(rows: list[dict], people: list[str], seen: list[str]) -> dict:
    _identify(rows, people, seen)
    seen_rows = [r for r in rows if r["person"] in seen]
    unseen_rows = [r for r in rows if r["person"] not in seen]
    return {"n": len(rows), "identity_seen": identity_block(seen_rows), "motion_all": motion_block(rows, people),
            "motion_seen": motion_block(seen_rows, people), "unseen": unseen_block(unseen_rows) if unseen_rows
            else None}


def headline(summary: dict) -> dict:
    ident, motion = summary["identity_seen"], summary["motion_all"]

    def r(v, k=3):
        return None if v is None else round(v, k)

    return {"identity_accuracy": r(ident["accuracy"]), "face_similarity": r(ident["face_similarity"]),
            "nearest_other_similarity": r(ident["nearest_other_similarity"]),
            "action_accuracy": r(motion["action_accuracy"]),
            "intensity_spearman": r(motion["intensity_pooled"]["spearman"]),
            "intensity_spearman_min_person": r(min(s["spearman"] for s in motion["intensity_by_person"].values())),
            "intensity_mae": r(motion["intensity_pooled"]["mae"], 2), "face_motion": r(motion["face_motion"], 2)}


# ---------------------------------------------------------------------------------------------------- comparisons
def _pairs(results: dict, a: str, b: str, field: str) -> tuple[np.ndarray, np.ndarray]:
    """``field`` of model a and of model b on the clips both made (same person, action, intensity, seed)."""
    def by_key(name):
        return {(r["person"], r["action"], r["asked"], r["seed"]): r[field]
                for r in results["models"][name]["rows"] if r[field] is not None}

    ra, rb = by_key(a), by_key(b)
    common = sorted(set(ra) & set(rb))
    return np.array([ra[k] for k in common], np.float64), np.array([rb[k] for k in common], np.float64)


def paired(results: dict, a: str, b: str, field: str) -> dict | None:
    """Mean of ``field`` in model a minus model b over the clips both made, with its 95% bootstrap interval."""
    va, vb = _pairs(results, a, b, field)
    return paired_bootstrap(va, vb) if len(va) else None


def subset_summary(results: dict, name: str) -> dict:
    """The model's summary on the clips every ablation has (seen people, the ablation seeds and asked intensities),
    so rows compare: the full model's sweep also asks 5 and 15, which would otherwise weigh in its row alone."""
    ablation = results["models"]["neither"]["rows"]
    seeds, asked = {r["seed"] for r in ablation}, {r["asked"] for r in ablation}
    rows = [dict(r) for r in results["models"][name]["rows"]
            if r["person"] in results["seen"] and r["seed"] in seeds and r["asked"] in asked]
    return summarise(rows, results["people"], results["seen"])


def identity_aims(full: dict, no_id: dict, n_seen: int, instrument: str = "") -> list[dict]:
    """The identity aims on one instrument's blocks (``identity_seen`` of the full model and of no ID insertion)."""
    lv = full["by_level"]
    lo, hi = min(lv, key=float), max(lv, key=float)
    chance = binomial_chance_interval(no_id["n"], 1 / n_seen)
    return [
        {"aim": f"full, seen people: identity accuracy >= 0.95{instrument}", "value": full["accuracy"],
         "met": full["accuracy"] >= 0.95},
        {"aim": f"full: identity accuracy >= 0.95 at every asked intensity{instrument}",
         "value": {k: v["accuracy"] for k, v in lv.items()}, "met": all(v["accuracy"] >= 0.95 for v in lv.values())},
        {"aim": f"full: accuracy at {hi} within 0.05 of {lo}{instrument}",
         "value": lv[hi]["accuracy"] - lv[lo]["accuracy"], "met": lv[hi]["accuracy"] >= lv[lo]["accuracy"] - 0.05},
        {"aim": f"full: face similarity falls <= 0.05 from {lo} to {hi}{instrument}",
         "value": lv[lo]["face_similarity"] - lv[hi]["face_similarity"],
         "met": lv[lo]["face_similarity"] - lv[hi]["face_similarity"] <= 0.05},
        {"aim": f"no ID insertion: identity accuracy at chance 1/{n_seen} (95% range {chance[0]:.3f}-"
                f"{chance[1]:.3f}, n={no_id['n']}){instrument}", "value": no_id["accuracy"],
         "met": chance[0] <= no_id["accuracy"] <= chance[1]},
    ]


def aims(results: dict) -> list[dict]:
    """Every aim of the issue, met or not: identity by dlib's instrument (and by the pixel instrument where the run
    has it), motion for everyone, and the loss ablations' effects reported."""
    m = results["models"]
    full, no_id, n_seen = m["full"], m["no_id"], len(results["seen"])
    motion = full["motion_all"]
    per_person = min(s["spearman"] for s in motion["intensity_by_person"].values())
    out = identity_aims(full["identity_seen"], no_id["identity_seen"], n_seen)
    out[4:4] = [
        {"aim": "full, all people: action accuracy (asked >= 5) >= 0.95", "value": motion["action_accuracy"],
         "met": motion["action_accuracy"] >= 0.95},
        {"aim": "full, all people: intensity Spearman >= 0.95", "value": motion["intensity_pooled"]["spearman"],
         "met": motion["intensity_pooled"]["spearman"] >= 0.95},
        {"aim": "full: intensity Spearman >= 0.9 for every person", "value": per_person, "met": per_person >= 0.9},
    ]
    if "pixel" in full and "pixel" in no_id:
        out += identity_aims(full["pixel"]["identity_seen"], no_id["pixel"]["identity_seen"], n_seen, " (pixels)")
    for label, (a, b, field) in EFFECTS.items():
        out.append({"aim": f"reported: {label}", "value": paired(results, a, b, field), "met": None})
    return out


def _fmt(v, k=3):
    return "-" if v is None else f"{v:.{k}f}"


def print_tables(results: dict) -> None:
    print("\nTable 2 at this scale (seen people, the ablation seeds; paper: adding L_id alone raised face similarity "
          f"by {PAPER['l_id_face_similarity_gain']}, adding L_R alone dynamic degree by "
          f"{PAPER['l_r_dynamic_degree_gain']})")
    print("| losses | identity accuracy | face similarity | action accuracy | intensity Spearman | MAE | "
          "face-region motion |")
    for name, label in [*TABLE2.items(), ("no_id", "(no ID insertion)")]:
        h = headline(subset_summary(results, name))
        print(f"| {label} | {_fmt(h['identity_accuracy'])} | {_fmt(h['face_similarity'])} | "
              f"{_fmt(h['action_accuracy'])} | {_fmt(h['intensity_spearman'])} | {_fmt(h['intensity_mae'], 2)} | "
              f"{_fmt(h['face_motion'], 2)} |")
    print("\nTable 3 at this scale (the full model's weights, the Motion Control Module on and off)")
    print("| model | identity accuracy | face similarity | action accuracy | intensity Spearman | MAE |")
    for name, label in (("full", "with the module"), ("no_mcm", "without (alpha = beta = 0)")):
        h = headline(subset_summary(results, name))
        print(f"| {label} | {_fmt(h['identity_accuracy'])} | {_fmt(h['face_similarity'])} | "
              f"{_fmt(h['action_accuracy'])} | {_fmt(h['intensity_spearman'])} | {_fmt(h['intensity_mae'], 2)} |")
    if all("pixel" in model for model in results["models"].values()):
        print("\nIdentity by both instruments (seen people, every clip each model made; the pixel instrument's "
              f"ceiling on the training clips: {_fmt(results.get('pixel_ceiling', {}).get('accuracy'))})")
        print("| model | dlib: accuracy | dlib: similarity | pixels: accuracy | pixels: similarity | "
              "pixels: accuracy by asked intensity |")
        for name, model in results["models"].items():
            d, p = model["identity_seen"], model["pixel"]["identity_seen"]
            levels = ", ".join(f"{k}: {v['accuracy']:.2f}" for k, v in p["by_level"].items())
            print(f"| {name} | {_fmt(d['accuracy'])} | {_fmt(d['face_similarity'])} | {_fmt(p['accuracy'])} | "
                  f"{_fmt(p['face_similarity'])} | {levels} |")
    unseen = results["models"]["full"]["unseen"] or {}
    print("\nUnseen people (full model): face similarity to the own reference / to the nearest seen person")
    for p, u in unseen.items():
        print(f"  {p}: {_fmt(u['face_similarity'])} / {_fmt(u['nearest_seen_similarity'])} ({u['nearest_seen']}); "
              f"own reference more similar in {_fmt(u['own_reference_wins'], 2)} of {u['n']} clips")
    print("\nAims")
    for a in results["aims"]:
        state = "reported" if a["met"] is None else ("MET" if a["met"] else "NOT MET")
        value = a["value"]
        if isinstance(value, dict) and "mean" in value:
            value = f"{value['mean']:+.4f} (95% CI {value['ci95'][0]:+.4f} to {value['ci95'][1]:+.4f}, n={value['n']})"
        elif isinstance(value, dict):
            value = ", ".join(f"{k}: {v:.3f}" for k, v in value.items())
        elif isinstance(value, float):
            value = f"{value:.3f}"
        print(f"  [{state}] {a['aim']}: {value}")


# ------------------------------------------------------------------------------------------ across training seeds
def replicate_names(works: list) -> list[str]:
    """What the comparison calls each replicate: its work folder's name, or, where two names clash, its numbered
    path."""
    names = [pathlib.Path(w).name for w in works]
    return names if len(set(names)) == len(names) else [f"{i + 1}: {w}" for i, w in enumerate(works)]


def across_training_seeds(replicates: dict[str, dict]) -> dict:
    """The recipe run more than once, each run differing only in the training seed of its five runs (``--train-set
    train.seed=N`` in a work folder that shares the build, base, phi and shared start): per replicate, each model's
    headline on the ablations' clips (Table 2's subset) and the full model's own; each loss effect per replicate
    and pooled (clips pair within their replicate; the interval resamples clips, so the spread between replicates
    is what says whether an effect outlives the training seed)."""
    out = {"models": {}, "full": {}, "effects": {}}
    for tag, results in replicates.items():
        out["full"][tag] = headline(summarise([dict(r) for r in results["models"]["full"]["rows"]],
                                              results["people"], results["seen"]))
        for name in [*TABLE2, "no_id"]:
            out["models"].setdefault(name, {})[tag] = headline(subset_summary(results, name))
    for label, (a, b, field) in EFFECTS.items():
        pairs = [_pairs(results, a, b, field) for results in replicates.values()]
        per = {tag: paired_bootstrap(va, vb) if len(va) else None for tag, (va, vb) in zip(replicates, pairs)}
        va, vb = np.concatenate([p[0] for p in pairs]), np.concatenate([p[1] for p in pairs])
        out["effects"][label] = {"per_replicate": per, "pooled": paired_bootstrap(va, vb) if len(va) else None}
    return out


def print_across_training_seeds(summary: dict) -> None:
    def effect(v):
        return "-" if v is None else f"{v['mean']:+.4f} ({v['ci95'][0]:+.4f} to {v['ci95'][1]:+.4f}, n={v['n']})"

    tags = list(summary["full"])
    print(f"\nAcross training seeds ({', '.join(tags)}): the full model on all its clips")
    print("| replicate | action accuracy | intensity Spearman (worst person) | MAE | identity accuracy (dlib) |")
    for tag, h in summary["full"].items():
        print(f"| {tag} | {_fmt(h['action_accuracy'])} | {_fmt(h['intensity_spearman'])} "
              f"({_fmt(h['intensity_spearman_min_person'])}) | {_fmt(h['intensity_mae'], 2)} | "
              f"{_fmt(h['identity_accuracy'])} |")
    print("\nEach model on the ablations' clips: action accuracy / intensity Spearman / face similarity (dlib) / "
          "face-region motion, per replicate")
    for name, per in summary["models"].items():
        cells = "; ".join(f"{tag}: {_fmt(h['action_accuracy'])} / {_fmt(h['intensity_spearman'])} / "
                          f"{_fmt(h['face_similarity'])} / {_fmt(h['face_motion'], 2)}" for tag, h in per.items())
        print(f"  {TABLE2.get(name, name)}: {cells}")
    print("\nLoss effects (mean difference, 95% bootstrap interval over clips) per replicate and pooled")
    for label, e in summary["effects"].items():
        cells = "; ".join(f"{tag}: {effect(v)}" for tag, v in e["per_replicate"].items())
        print(f"  {label}: {cells}; pooled {effect(e['pooled'])}")


def read_results(path: pathlib.Path) -> dict:
    """A finished run's results.json, or the gzipped results.json.gz committed under benchmarks/results/; anything
    else (missing, truncated, not a run with its rows) is refused in one line naming the file."""
    import gzip
    import json

    try:
        data = path.read_bytes()
        results = json.loads(gzip.decompress(data) if path.suffix == ".gz" else data)
        results["models"]["full"]["rows"]
    except (OSError, EOFError, ValueError, KeyError, TypeError) as e:
        raise SystemExit(f"{path}: not a results.json of identity_control.py with its rows ({e!r}); give the "
                         "one a run writes in its --work") from None
    return results


def main(argv=None) -> int:
    """Re-reads finished runs: ``python benchmarks/identity_report.py WORK/results.json [WORK2/results.json ...]``
    prints each run's tables and aims with this file's code, and, given several (the same recipe with another
    ``--train-set train.seed=N``), the comparison across training seeds (results.json.gz read as it is)."""
    import argparse

    p = argparse.ArgumentParser(description=main.__doc__.split("\n")[0])
    p.add_argument("results", nargs="+", type=pathlib.Path,
                   help="results.json (or .json.gz) of identity_control.py runs")
    args = p.parse_args(argv)
    replicates = []
    for path in args.results:
        results = read_results(path)
        results["aims"] = aims(results)
        print(f"\n== {path}")
        print_tables(results)
        replicates.append(results)
    if len(replicates) > 1:
        names = replicate_names([path.resolve().parent for path in args.results])
        print_across_training_seeds(across_training_seeds(dict(zip(names, replicates))))
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
