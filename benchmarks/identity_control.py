"""Who moves is set by the reference face, and motion never costs identity: the paper's identity claim end to end at
small scale on a CPU, with its Table 2 (the two losses) and Table 3 (the Motion Control Module) ablations.

    .venv/bin/python benchmarks/identity_control.py [--work DIR] [--steps N]

1. People (``identity_people.py``): ten faces from installed packages and ``../shared/data/dev`` (the demo's
   astronaut and Grace Hopper, still frames of the dev videos, the dev photo, one face of insightface's group
   photo), each moved by the demo source with ``action_control``'s four kinds of motion at six speeds (build
   intensity 0-20 px per step at 512 px), plus its portrait. Captions name the kind of motion only. Two people are
   held out of everything trained (the VAE, phi and the five runs) for an unseen-identity check.
2. The small base of ``motion_recipe`` and phi, the differentiable face embedder of the ID-consistency loss: a small
   CNN trained with ArcFace's additive angular margin loss on the seen people's face crops
   (``model/face_embedder.py``).
3. ``hm train --config train_identity`` five times side by side on every seen person: the full model (ID
   insertion, Motion Control Module, L_R and L_id), no ID insertion (``model.id_scale=0``), no L_id
   (``loss.id_weight=0``), no L_R (``loss.region_delta=0``), neither loss, all five from one shared start
   (``train_identity`` with neither loss, ``--pretrain-steps`` on ``--pretrain-people`` only), as the paper's
   variants all start from one pretrained AnimateDiff: on two people the Motion Control Module learns the actions,
   which from the random base on eight it did not up to 1500 steps (``--pretrain-steps 0``: the 2026-12-06 recipe;
   README).
4. Each run generates people x actions x intensities x seeds through ``MotionCharacterPipeline``; the full model's
   sweep is repeated with the Motion Control Module switched off (Table 3). Every clip is measured with
   instruments outside the model (``identity_measure.py``): who it shows and its face similarity to its own
   reference (BlazeFace + dlib's ResNet, the build's face code; and, in pixels, how near its frames come to each
   person's training frames after the VAE), its intensity and kind of motion (the build's DIS flow,
   ``eval.motion_kind``) and the motion inside its face box.

Printed: Table 2, Table 3, identity by both instruments, the unseen people, every aim met or not; the last line is
one JSON object. Written: ``<work>/results.json``, ``benchmarks/identity_control.png`` (people as rows, intensities
as columns: face similarity and identity hits of the full model; and the ablations' curves),
``<work>/identity_control_frames.png`` (the generated frames in the same grid; not for the repository: it shows the
people). Report in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import numpy as np
import torch

from action_control import ACTIONS, MIN_KIND_PX, demo_options
from identity_measure import IdentityInstrument, PixelIdentity, face_region_motion
from identity_people import CATALOGUE, gather
from identity_report import (across_training_seeds, aims, headline, print_across_training_seeds, print_tables,
                             replicate_names, summarise)
from motion_recipe import (NUM_FRAMES, OUT_PX, RES, ROOT, UNIT, add_arguments, build_shards, cpu_seconds, dis,
                           generate_batch, id_kind_of, load_pipeline, log, measure, shard_samples, start, train_runs,
                           val_loss_first_last, vae_round_trip, write_base)
from motion_recipe import references as portraits

from human_motion.eval.motion_kind import classify, clip_components

VARIANTS = {"full": [], "no_id": ["model.id_scale=0"], "no_lid": ["loss.id_weight=0"],
            "no_lr": ["loss.region_delta=0"], "neither": ["loss.id_weight=0", "loss.region_delta=0"]}
KIND_OF_ACTION = {phrase: kind for kind, phrase in ACTIONS.items()}


def person_of(clip_id: str, people: list[str]) -> str | None:
    """The person a demo clip or portrait shows, from its name ("{person}_{motion}_..." or "{person}_portrait")."""
    found = [p for p in people if clip_id.startswith(p + "_")]
    return max(found, key=len) if found else None


def level_of(label: float, levels: list[float]) -> float:
    """The build level a training clip stands for: the nearest of ``levels`` to its label (512-px px per step)."""
    return min(levels, key=lambda v: abs(v - label))


def seen_keys(shards: pathlib.Path, seen: list[str], people: list[str], out: pathlib.Path,
              slow_weight: float = 1.0, levels: list[float] | None = None) -> set[str]:
    """The keys of the seen people's samples, written to ``out`` (``data.keys_file``). With ``slow_weight`` != 1,
    the clips whose label is nearest the slowest moving of ``levels`` are drawn that many times as often as the
    others (``key<TAB>weight`` lines: ``hm select --weights``' format)."""
    import pyarrow.parquet as pq

    index = pq.read_table(shards / "index.parquet", columns=["key", "clip_id", "static", "intensity"]).to_pylist()
    mine = sorted((r for r in index if person_of(r["clip_id"], people) in seen), key=lambda r: r["key"])
    if slow_weight == 1.0:
        out.write_text("".join(f"{r['key']}\n" for r in mine))
    else:
        slowest = min(v for v in levels if v > 0)

        def weight(r):
            if r["static"] or r["intensity"] is None:
                return 1.0
            return slow_weight if level_of(r["intensity"] * UNIT, levels) == slowest else 1.0

        out.write_text("".join(f"{r['key']}\t{weight(r):g}\n" for r in mine))
    return {r["key"] for r in mine}


# ------------------------------------------------------------------------------------------------------------ phi
def fit_phi(work: pathlib.Path, shards: pathlib.Path, base: pathlib.Path, seen: list[str], people: list[str],
            id_kind: str, id_dim: int, steps: int, seed: int) -> pathlib.Path:
    """phi: ``SmallFaceEmbedder`` trained with ArcFace's loss on the seen people's square face crops (the ID loss's
    own crop) of the training frames, decoded and after the VAE, and on their reference crops. Saved to <work>/phi."""
    from diffusers import AutoencoderKL

    from human_motion.model.face_embedder import fit_face_embedder
    from human_motion.model.losses import square_face_crops

    out = work / "phi"
    if (out / "config.json").exists():
        log(f"reusing {out}")
        return out
    vae = AutoencoderKL.from_pretrained(base / "vae").eval()
    faces, labels = [], []
    for s in shard_samples(shards, NUM_FRAMES, id_kind, id_dim):
        person = person_of(s["key"].split("__")[1], people)
        if person not in seen:
            continue
        with torch.no_grad():
            decoded = vae.decode(vae.encode(s["pixel_values"]).latent_dist.mean).sample.clamp(-1, 1)
        for frames in (s["pixel_values"], decoded):
            faces.append(square_face_crops(frames, s["face_boxes"], RES))
        faces.append(s["face"][None])
        labels += [seen.index(person)] * (2 * len(s["pixel_values"]) + 1)
    log(f"phi: {len(labels)} face crops of {len(seen)} people")
    phi = fit_face_embedder(torch.cat(faces), torch.tensor(labels), steps=steps, seed=seed, log=log)
    phi.save_pretrained(out)
    return out


# ----------------------------------------------------------------------------------------------- the shared start
def pretrain(work: pathlib.Path, shards: pathlib.Path, base: pathlib.Path, who: list[str], steps: int,
             threads: int, people: list[str], id_kind: str, id_dim: int, common: list[str]) -> pathlib.Path | None:
    """The five runs' shared start: ``train_identity`` with neither loss, ``steps`` on the samples of ``who`` only
    (<work>/pretrain_keys.txt), in <work>/pretrain; None when ``steps`` is 0.
    On two people the action branch learns in ~1000 steps; from the random base on eight it had not at 1500. From
    this start, one 1500-step cycle on all eight teaches both who and how (README; action accuracy 0.997; 1000
    steps: 0.86 and 0.76 at two training seeds; 500: 0.58)."""
    if steps <= 0:
        return None
    keys_file = work / "pretrain_keys.txt"
    seen_keys(shards, who, people, keys_file)
    extra = [f"data.keys_file={keys_file}", "loss.id_weight=0", "loss.region_delta=0"]  # after common: they win
    return train_runs(work, {"pretrain": extra}, shards, base, "train_identity", steps, threads, id_kind, id_dim,
                      common)["pretrain"]


# ---------------------------------------------------------------------------------------------------- replicates
SHARED = ("shards", "base", "phi", "pretrain", "people")  # what a replicate takes from the run it repeats
SAME = ("people", "held_out", "phi_steps", "pretrain_steps", "pretrain_people", "slow_weight",
        "train_steps")  # and must match
DEFAULTS = {"slow_weight": 1.0}  # of settings that runs before they were recorded had


def share_start(work: pathlib.Path, source: pathlib.Path, settings: dict, train_set: list[str]) -> dict:
    """``--replicate-of SOURCE``: a finished run's build, base, phi and shared start, linked into ``work`` (its
    measurements of the training clips copied), so that only the five runs train again, with the training seed of
    ``--train-set train.seed=N``. Returns SOURCE's results (to compare with). Refuses, before anything is built, a
    source that has not finished, one whose people, shared start or training steps differ, and a replicate with no
    new seed."""
    source = source.resolve()
    if source == work:
        raise SystemExit(f"--replicate-of {source}: that is this run's own --work; give another --work")
    try:
        done = json.loads((source / "results.json").read_text())
        differ = [k for k in SAME if done.get(k, DEFAULTS.get(k)) != settings[k]]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise SystemExit(f"--replicate-of {source}: no finished identity_control run there ({e.__class__.__name__}); "
                         f"run it with --work {source} first") from None
    if differ:
        raise SystemExit(f"--replicate-of {source}: its {', '.join(differ)} differ from this run's; a replicate "
                         "repeats them and changes only the training seed")
    seeds = [s.split("=", 1)[1].strip() for s in train_set if s.startswith("train.seed=")]
    try:
        first = str(json.loads((source / "full" / "config.json").read_text())["train"]["seed"])
    except (OSError, ValueError, KeyError, TypeError):
        first = None
    if not seeds or seeds[-1] == first:
        raise SystemExit(f"--replicate-of {source}: give the five runs another seed (--train-set train.seed=N, not "
                         f"{first}), or they repeat those of the source")
    for name in SHARED:
        if (source / name).exists() and not (work / name).exists():
            (work / name).symlink_to(source / name, target_is_directory=True)
    (work / "sweeps").mkdir(exist_ok=True)
    for name in ("bank.npz", "ceiling.json"):
        if (source / "sweeps" / name).is_file() and not (work / "sweeps" / name).exists():
            shutil.copy2(source / "sweeps" / name, work / "sweeps" / name)
    log(f"replicate of {source}: sharing its {', '.join(SHARED)}")
    return done


# ---------------------------------------------------------------------------------------------------- measurement
def measure_clip(frames: np.ndarray, instrument: IdentityInstrument, references: np.ndarray,
                 embed_frames: list[int]) -> dict:
    """Intensity (Eq. 5-7), kind of motion, who it shows (similarity to every reference) and face-region motion."""
    flows = dis()(frames)  # (t-1, s, s, 2)
    components = clip_components(flows) * (OUT_PX / frames.shape[2])
    ident = instrument.clip(frames, references, embed_frames)
    return {"measured": measure(frames), "found": classify(components, MIN_KIND_PX),
            "sims": None if ident["sims"] is None else [round(float(v), 5) for v in ident["sims"]],
            "embedded_frames": ident["embedded"], "faces_found": sum(b is not None for b in ident["boxes"]),
            "face_motion": face_region_motion(flows, ident["boxes"], instrument.up_px, OUT_PX)}


def ceiling(shards, bank, people, instrument, references, embed_frames, id_kind, id_dim, levels) -> list[dict]:
    """The training clips of every person (seen and held out), after the VAE at RES x NUM_FRAMES (their frames in
    ``bank``, ``training_bank``'s), measured as the generated ones are: their label stands for the asked intensity,
    and the nearest of ``levels`` groups them."""
    rows = []
    for s in shard_samples(shards, NUM_FRAMES, id_kind, id_dim):
        kind = KIND_OF_ACTION.get(s["action"])
        person = person_of(s["key"].split("__")[1], people)
        if s["static"] or kind is None or person is None:
            continue
        frames, clips = bank[person]
        label = float(s["intensity"]) * UNIT
        rows.append({"person": person, "action": kind, "asked": label,
                     "level": level_of(label, levels), "seed": 0,
                     **measure_clip(frames[clips == s["key"]], instrument, references, embed_frames)})
    log(f"ceiling: {len(rows)} training clips measured")
    return rows


def saved_bank(done: pathlib.Path, people: list[str]) -> dict[str, tuple[np.ndarray, np.ndarray]] | None:
    """``training_bank``'s frames as kept in ``done`` (<work>/sweeps/bank.npz); None when it is not there or lacks
    someone of ``people``."""
    if done.exists():
        saved = np.load(done)
        if all(f"{p}__frames" in saved.files for p in people):
            return {p: (saved[f"{p}__frames"], saved[f"{p}__clips"]) for p in people}
    return None


def add_pixel_sims(rows: list[dict], clips: dict, pixel: PixelIdentity) -> None:
    """Each row's similarity by pixels to every person (``pixel_sims``), from its clip in ``clips`` (keyed person,
    action, asked, seed); a row that has them keeps them."""
    for r in rows:
        if "pixel_sims" not in r:
            sims = pixel.sims(clips[(r["person"], r["action"], r["asked"], r["seed"])])
            r["pixel_sims"] = [round(float(v), 5) for v in sims]


def training_bank(work, shards, base, people, id_kind, id_dim) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every person's training frames after the VAE at RES (stills included), with the key of the clip each frame
    comes from: the pixel instrument's references. Kept in <work>/sweeps/bank.npz."""
    done = work / "sweeps" / "bank.npz"
    bank = saved_bank(done, people)
    if bank is not None:
        return bank
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(base / "vae").eval()
    frames, clips = {p: [] for p in people}, {p: [] for p in people}
    for s in shard_samples(shards, NUM_FRAMES, id_kind, id_dim):
        person = person_of(s["key"].split("__")[1], people)
        if person is None:
            continue
        frames[person].append(vae_round_trip(vae, s["pixel_values"]))
        clips[person] += [s["key"]] * len(frames[person][-1])
    bank = {p: (np.concatenate(frames[p]), np.asarray(clips[p])) for p in people}
    done.parent.mkdir(exist_ok=True)
    np.savez_compressed(done, **{f"{p}__{part}": bank[p][i] for p in people for i, part in enumerate(("frames",
                                                                                                      "clips"))})
    return bank


def pixel_ceiling(bank, pixel: PixelIdentity, people: list[str], seen: list[str]) -> dict:
    """The pixel instrument on the seen people's training clips, each measured with its own frames left out: how
    often the nearest person is the right one (what a generated clip can reach at best)."""
    idx = [people.index(p) for p in seen]
    hits = n = 0
    for person in seen:
        frames, clips = bank[person]
        for key in np.unique(clips):
            sims = pixel.sims(frames[clips == key], exclude=key)
            hits += seen[int(np.argmax(sims[idx]))] == person
            n += 1
    return {"n": n, "accuracy": hits / n if n else None}


# --------------------------------------------------------------------------------------------------- generation
def sweep(pipe, refs: dict[str, np.ndarray], people: list[str], intensities: list[float], seeds: list[int],
          steps: int, guidance: float, instrument, references, embed_frames) -> tuple[list[dict], dict]:
    """Every (person, action, intensity, seed) once: measured rows, and the clips by key. The actions x intensities
    of one person and seed are one batch with the same initial noise in each video, so within it only the asked
    action and intensity differ, and across people only the reference does."""
    asks = [(kind, float(v)) for kind in ACTIONS for v in intensities]
    rows, clips = [], {}
    for person in people:
        face = pipe.prepare_reference(refs[person])
        for seed in seeds:
            videos = generate_batch(pipe, face, [ACTIONS[k] for k, _ in asks], [v for _, v in asks], seed, steps,
                                    guidance)
            for (kind, intensity), frames in zip(asks, videos):
                rows.append({"person": person, "action": kind, "asked": intensity, "seed": seed,
                             **measure_clip(frames, instrument, references, embed_frames)})
                clips[(person, kind, intensity, seed)] = frames
    return rows, clips


def sweep_key(run: pathlib.Path, people: list[str], seeds: list[int], intensities: list[float], steps: int,
              guidance: float, embed_frames: list[int]) -> dict:
    """What a cached sweep depends on: the asks and sampling settings, and the run's weights by each file's name,
    size and modification time (a run trained again in the same folder is measured again)."""
    weights = [[str(f.relative_to(run)), f.stat().st_size, f.stat().st_mtime_ns]
               for part in ("unet", "adapter") for f in sorted((run / part).glob("*.safetensors"))]
    return {"run": str(run), "weights": weights, "people": people, "seeds": seeds, "intensities": intensities,
            "steps": steps, "guidance": guidance, "embed_frames": embed_frames}


def sweeps(work, runs, refs, people, seen, args, instrument, references, embed_frames, timings):
    """Each model's sweep: the full model on everyone with ``--seeds`` and ``--intensities``; the same weights with
    the Motion Control Module off, and the ablations, on the seen people with ``--ablation-seeds`` and
    ``--ablation-intensities`` (a subset of the full model's, so that clips pair)."""
    def floats(text):
        return [float(v) for v in text.split(",")]

    seeds, ablation_seeds = [int(v) for v in args.seeds.split(",")], [int(v) for v in args.ablation_seeds.split(",")]
    plan = [("full", "full", people, seeds, floats(args.intensities)),
            ("no_mcm", "full", seen, ablation_seeds, floats(args.ablation_intensities))]
    plan += [(name, name, seen, ablation_seeds, floats(args.ablation_intensities)) for name in runs if name != "full"]
    rows, clips = {}, {}
    for name, run, who, which, intensities in plan:
        t0 = time.time()
        # A finished sweep is kept (its rows, and the full model's clips for the picture): a run stopped later, or
        # one that only changes the report, does not generate again. The key names everything the sweep depends on.
        key = sweep_key(runs[run], who, which, intensities, args.sample_steps, args.guidance, embed_frames)
        done = work / "sweeps" / f"{name}.json"
        cached = json.loads(done.read_text()) if done.exists() else None
        if cached is not None and cached["key"] == key:
            rows[name] = cached["rows"]
            saved = np.load(done.with_suffix(".npz"))
            clips[name] = {tuple(json.loads(k)): saved[k] for k in saved.files}
            log(f"{name}: reusing {len(rows[name])} measured clips from {done}")
            continue
        pipe = load_pipeline(runs[run])
        if name == "no_mcm":  # Table 3: the full model's weights with alpha = beta = 0 (Eq. 8)
            pipe.adapter.set_scales(action_scale=0.0, intensity_scale=0.0)
        rows[name], clips[name] = sweep(pipe, refs, who, intensities, which, args.sample_steps, args.guidance,
                                        instrument, references, embed_frames)
        done.parent.mkdir(exist_ok=True)
        np.savez_compressed(done.with_suffix(".npz"), **{json.dumps(list(k)): v for k, v in clips[name].items()})
        done.write_text(json.dumps({"key": key, "rows": rows[name]}))
        timings[f"sweep_{name}_s"] = time.time() - t0
        log(f"{name}: {len(rows[name])} clips in {timings[f'sweep_{name}_s']:.0f} s")
    return rows, clips


# ------------------------------------------------------------------------------------------------------- main
def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_arguments(p, "identity_control", "five models", steps=1500, vae_steps=400)  # the measured run (README)
    names = list(CATALOGUE)
    p.add_argument("--people", default=",".join(names[:10]), help=f"from {', '.join(names)}")
    p.add_argument("--held-out", default="lp_d20,group_0", help="people left out of every training")
    p.add_argument("--levels", default="0,4,8,12,16,20", help="build intensities of each kind (px per step at 512)")
    p.add_argument("--intensities", default="0,5,10,15,20", help="asked, in px per step at 512 px")
    p.add_argument("--seeds", default="0,1", help="sampling seeds of the full model")
    p.add_argument("--ablation-seeds", default="0", help="sampling seeds of the other models (seen people)")
    p.add_argument("--ablation-intensities", default="0,10,20", help="asked of the other models")
    p.add_argument("--guidance", type=float, default=2.0)
    p.add_argument("--slow-weight", type=float, default=1.0,
                   help="the five runs draw the clips of the slowest moving of --levels (4 px per step) this many "
                        "times as often as the others (data.keys_file weights; 1: the measured recipe; at 1500 "
                        "steps the full model met the motion aims at both training seeds with 1 and with 3, better "
                        "with 1: README)")
    p.add_argument("--phi-steps", type=int, default=200, help="training steps of the face embedder phi")
    p.add_argument("--pretrain-steps", type=int, default=1000,
                   help="training steps of a shared start on --pretrain-people from which the five runs train "
                        "(1000; 0: they start from the random base, the 2026-12-06 recipe with --steps 700; README)")
    p.add_argument("--pretrain-people", default="astronaut,hopper",
                   help="seen people of the shared start (action_control's two photos)")
    p.add_argument("--embed-frames", default="0,7",
                   help="frames of each clip embedded for identity (the two ends of its sweep; dlib's ResNet costs "
                        "0.15-0.3 s a face on this CPU)")
    p.add_argument("--pictures", default=None,
                   help="PREFIX.png (plots, people as rows; default benchmarks/identity_control, or <work>/"
                        "identity_control for a replicate); the frames grid goes to <work>")
    p.add_argument("--replicate-of", type=pathlib.Path, metavar="WORK",
                   help="repeat the finished run in WORK with another training seed of the five runs (give "
                        "--train-set train.seed=N): its build, base, phi and shared start are shared, and the "
                        "loss effects are compared across the two (README)")
    # 15 DDIM steps, not the 25 of action_control: ~900 clips to generate (README, identity control: what it cost).
    p.set_defaults(sample_steps=15)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse(argv)
    work = start(args)
    t_start, timings, load = time.time(), {}, [os.getloadavg()[0]]
    people, held_out = args.people.split(","), args.held_out.split(",")
    seen = [p for p in people if p not in held_out]
    if len(seen) < 2 or len(seen) + len(held_out) != len(people):
        raise SystemExit("--held-out must name some of --people and leave at least two seen")
    pretrain_people = args.pretrain_people.split(",") if args.pretrain_steps > 0 else []
    if not set(pretrain_people) <= set(seen):
        raise SystemExit(f"--pretrain-people {args.pretrain_people}: each must be one of the seen people "
                         f"({','.join(seen)})")
    embed_frames = [int(v) for v in args.embed_frames.split(",")]
    if args.slow_weight <= 0:
        raise SystemExit(f"--slow-weight {args.slow_weight}: must be > 0 (1: every clip as often)")
    settings = {"people": people, "held_out": held_out, "phi_steps": args.phi_steps,
                "pretrain_steps": args.pretrain_steps, "pretrain_people": pretrain_people,
                "slow_weight": args.slow_weight, "train_steps": args.steps}
    source = share_start(work, args.replicate_of, settings, args.train_set) if args.replicate_of else None
    if args.pictures is None:
        args.pictures = str(work / "identity_control" if source else ROOT / "benchmarks" / "identity_control")

    t0 = time.time()
    levels = [float(v) for v in args.levels.split(",")]
    options = demo_options(levels, people)
    options["photo_files"] = gather(people, work / "people")
    shards = build_shards(work, options, args.threads)
    keys = seen_keys(shards, seen, people, work / "seen_keys.txt", args.slow_weight, levels)
    timings["build_s"] = time.time() - t0
    id_kind, id_dim = id_kind_of(shards)
    t0 = time.time()
    base = write_base(work, shards, args.vae_steps, args.seed, id_kind, id_dim, keys=keys)
    timings["base_s"] = time.time() - t0
    t0 = time.time()
    phi = fit_phi(work, shards, base, seen, people, id_kind, id_dim, args.phi_steps, args.seed)
    timings["phi_s"] = time.time() - t0

    instrument = IdentityInstrument(RES)
    refs = portraits(work, people)
    references = np.stack([instrument.reference(refs[p]) for p in people])  # (n, 128), rows in --people order
    t0 = time.time()
    bank = training_bank(work, shards, base, people, id_kind, id_dim)  # every training clip through the VAE, once
    pixel = PixelIdentity(bank, people)
    done = work / "sweeps" / "ceiling.json"
    if done.exists():
        ceil_rows = json.loads(done.read_text())
    else:
        ceil_rows = ceiling(shards, bank, people, instrument, references, embed_frames, id_kind, id_dim,
                            levels)
        done.parent.mkdir(exist_ok=True)
        done.write_text(json.dumps(ceil_rows))
    timings["ceiling_s"] = time.time() - t0

    t0 = time.time()
    common = [f"train.seed={args.seed}", f"data.keys_file={work / 'seen_keys.txt'}", f"loss.face_embedder={phi}",
              *args.train_set]
    start_from = pretrain(work, shards, base, pretrain_people, args.pretrain_steps, args.threads, people, id_kind,
                          id_dim, common)
    timings["pretrain_s"] = time.time() - t0
    if start_from:
        common += [f"model.unet={start_from / 'unet'}", f"model.adapter={start_from / 'adapter'}"]
    t0 = time.time()
    runs = train_runs(work, VARIANTS, shards, base, "train_identity", args.steps, args.threads, id_kind, id_dim,
                      common)
    timings["train_all_s"] = time.time() - t0
    load.append(os.getloadavg()[0])

    torch.set_num_threads(args.threads)
    rows, clips = sweeps(work, runs, refs, people, seen, args, instrument, references, embed_frames, timings)
    load.append(os.getloadavg()[0])
    results = {"people": people, "seen": seen, "held_out": held_out, "instrument": instrument.name,
               "embed_frames": embed_frames, "resolution": RES, "num_frames": NUM_FRAMES, "actions": ACTIONS,
               "train_steps": args.steps, "sample_steps": args.sample_steps, "guidance_scale": args.guidance,
               "phi_steps": args.phi_steps, "pretrain_steps": args.pretrain_steps,
               "pretrain_people": pretrain_people, "slow_weight": args.slow_weight,
               "ceiling": summarise(ceil_rows, people, seen),
               "pixel_instrument": pixel.name, "pixel_ceiling": pixel_ceiling(bank, pixel, people, seen),
               "models": {}}
    for name, model_rows in rows.items():
        add_pixel_sims(model_rows, clips[name], pixel)
        summary = summarise(model_rows, people, seen)
        by_pixels = summarise([{**r, "sims": r["pixel_sims"]} for r in model_rows], people, seen)
        run = runs.get(name)
        results["models"][name] = {"headline": headline(summary), **summary, "rows": model_rows,
                                   "pixel": {k: by_pixels[k] for k in ("identity_seen", "unseen")},
                                   "val_loss_first_last": val_loss_first_last(run) if run else None}
        results["models"][name]["headline"].update(
            pixel_identity_accuracy=round(by_pixels["identity_seen"]["accuracy"], 3),
            pixel_similarity=round(by_pixels["identity_seen"]["face_similarity"], 4))
    results["aims"] = aims(results)
    timings["total_s"] = time.time() - t_start
    timings["cpu_s"] = cpu_seconds()
    results["load_average_1min"] = load
    results["timings_s"] = {k: round(v, 1) for k, v in timings.items()}
    (work / "results.json").write_text(json.dumps(results, indent=2))

    from identity_control_plots import frames_grid, plot

    plot(results, pathlib.Path(args.pictures).with_suffix(".png"))
    frames_grid(clips["full"], refs, people, held_out, work / "identity_control_frames.png")
    print_tables(results)
    if source is not None:
        names = replicate_names([args.replicate_of.resolve(), work])
        print_across_training_seeds(across_training_seeds(dict(zip(names, (source, results)))))
    line = {"full": results["models"]["full"]["headline"],
            **{name: results["models"][name]["headline"] for name in results["models"] if name != "full"},
            "aims_met": {a["aim"]: a["met"] for a in results["aims"]},
            "minutes": round(timings["total_s"] / 60, 1), "cpu_minutes": round(timings["cpu_s"] / 60, 1)}
    print(json.dumps(line))
    return 0


if __name__ == "__main__":
    sys.exit(main())
