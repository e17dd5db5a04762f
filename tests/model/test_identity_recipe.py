"""The identity recipe (benchmarks/identity_control.py): its summaries on rows whose answer is known, the people it
can gather, and the whole recipe end to end at a few steps (slow) so it cannot rot: the build of several people with
some held out, phi, five ``hm train`` runs, the sweeps measured by instruments outside the model, the aims, the
pictures and the one-line JSON."""

from __future__ import annotations

import importlib.util
import json
import pathlib
import sys

import numpy as np
import pytest
import torch

ROOT = pathlib.Path(__file__).resolve().parents[2]
HEADLINE = {"identity_accuracy", "face_similarity", "nearest_other_similarity", "action_accuracy",
            "intensity_spearman", "intensity_spearman_min_person", "intensity_mae", "face_motion"}


def load(name: str):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def row(person, sims, asked=10.0, action="horizontal", seed=0, measured=None, found=None, face_motion=1.0):
    return {"person": person, "action": action, "asked": asked, "seed": seed, "sims": sims,
            "measured": asked if measured is None else measured, "found": found or action,
            "face_motion": face_motion}


PEOPLE, SEEN = ["a", "b", "c", "d"], ["a", "b", "c"]


def test_identity_is_the_most_similar_seen_person_and_unseen_people_are_compared_with_the_nearest():
    report = load("identity_report")
    rows = [row("a", [0.9, 0.5, 0.4, 0.95]),  # d is unseen: its higher cosine does not count for a seen clip
            row("b", [0.8, 0.7, 0.1, 0.1], asked=20.0),  # shows a: wrong
            row("c", None),  # no face found: wrong, counted
            row("d", [0.6, 0.7, 0.2, 0.9])]
    s = report.summarise(rows, PEOPLE, SEEN)
    ident = s["identity_seen"]
    assert (ident["n"], ident["correct"], ident["no_face"]) == (3, 1, 1)
    assert ident["face_similarity"] == pytest.approx((0.9 + 0.7) / 2)
    assert ident["by_level"]["20"]["accuracy"] == 0.0 and ident["by_level"]["10"]["accuracy"] == 0.5
    assert rows[1]["shown"] == "a" and rows[1]["nearest_seen"] == "a"
    u = s["unseen"]["d"]
    assert (u["face_similarity"], u["nearest_seen"], u["nearest_seen_similarity"]) == (0.9, "b", 0.7)
    assert u["own_reference_wins"] == 1.0
    assert set(report.headline(s)) == HEADLINE


def test_a_model_blind_to_identity_is_exactly_at_chance_and_the_aim_says_so():
    report = load("identity_report")
    # The same clip for every person (a blind model with one seed): it shows one person, right for one in three.
    blind = [row(p, [0.9, 0.5, 0.4, 0.3], asked=v, action=k) for p in SEEN for v in (0.0, 20.0)
             for k in ("horizontal", "zoom")]
    good = [row(p, [0.95 if q == p else 0.5 for q in PEOPLE], asked=v, action=k, seed=s)
            for p in PEOPLE for v in (0.0, 20.0) for k in ("horizontal", "zoom") for s in (0, 1)]
    results = {"people": PEOPLE, "seen": SEEN, "models": {}}
    for name, rows in {"full": good, "no_id": blind, "no_lid": good, "no_lr": good, "neither": good}.items():
        rows = [dict(r) for r in rows]
        results["models"][name] = {**report.summarise(rows, PEOPLE, SEEN), "rows": rows}
    assert results["models"]["no_id"]["identity_seen"]["accuracy"] == pytest.approx(1 / 3)
    aims = {a["aim"].split(" (")[0]: a for a in report.aims(results)}
    assert aims["no ID insertion: identity accuracy at chance 1/3"]["met"]
    assert aims["full, seen people: identity accuracy >= 0.95"]["met"]
    assert aims["full: face similarity falls <= 0.05 from 0 to 20"]["met"]
    effect = aims["reported: L_id on face similarity, with L_R"]["value"]
    assert effect["mean"] == 0 and effect["n"] == len(good)


def test_tables_compare_the_full_model_on_the_ablations_clips_only():
    """The full model's sweep asks more intensities (5, 15) and seeds than the ablations; its row in Tables 2 and 3
    is read on the clips the ablations have, or its misses at asked 5 would count against it alone."""
    report = load("identity_report")
    sims = {p: [0.95 if q == p else 0.5 for q in PEOPLE] for p in PEOPLE}
    ablation = [row(p, sims[p], asked=v, action=k) for p in SEEN for v in (0.0, 20.0) for k in ("horizontal", "zoom")]
    full = ablation + [row(p, sims[p], asked=5.0, action=k, found="still") for p in SEEN
                       for k in ("horizontal", "zoom")] + [row(p, sims[p], asked=20.0, seed=1, found="zoom")
                                                           for p in SEEN]
    results = {"people": PEOPLE, "seen": SEEN, "models": {"full": {"rows": full}, "neither": {"rows": ablation}}}
    whole = report.headline(report.summarise([dict(r) for r in full], PEOPLE, SEEN))
    assert whole["action_accuracy"] < 0.5  # every asked-5 clip and the seed-1 clips read wrong
    subset = report.subset_summary(results, "full")
    assert subset["n"] == len(ablation)
    assert report.headline(subset)["action_accuracy"] == 1.0


def test_loss_effects_across_training_seeds_pair_clips_within_each_replicate_and_pool(tmp_path, capsys):
    """Two runs of the recipe that differ in the training seed: each loss effect per replicate and pooled, and the
    command that re-reads finished runs prints both and refuses a file without rows."""
    report = load("identity_report")
    sims = {p: [0.95 if q == p else 0.5 for q in PEOPLE] for p in PEOPLE}

    def replicate(gain):
        base = [row(p, sims[p], asked=v, action=k) for p in SEEN for v in (0.0, 20.0) for k in ("horizontal", "zoom")]
        models = {name: [dict(r) for r in base] for name in ("no_mcm", "no_id", "no_lid", "no_lr", "neither")}
        models["full"] = [{**r, "face_motion": r["face_motion"] + gain} for r in base]
        results = {"people": PEOPLE, "seen": SEEN, "models": {}}
        for name, rows in models.items():
            results["models"][name] = {**report.summarise(rows, PEOPLE, SEEN), "rows": rows}
        return results

    summary = report.across_training_seeds({"seed0": replicate(1.0), "seed1": replicate(3.0)})
    effect = summary["effects"]["L_R on face-region motion, with L_id (full - no_lr)"]
    assert effect["per_replicate"]["seed0"]["mean"] == pytest.approx(1.0)
    assert effect["per_replicate"]["seed1"]["mean"] == pytest.approx(3.0)
    assert effect["pooled"]["mean"] == pytest.approx(2.0) and effect["pooled"]["n"] == 24
    assert summary["effects"]["L_R on face-region motion, without L_id (no_lid - neither)"]["pooled"]["mean"] == 0
    assert summary["models"]["full"]["seed1"]["face_motion"] == pytest.approx(4.0)
    paths = []
    for tag, gain in (("w0", 1.0), ("w1", 3.0)):
        (tmp_path / tag).mkdir()
        paths.append(tmp_path / tag / "results.json")
        paths[-1].write_text(json.dumps(replicate(gain)))
    assert report.main([str(p) for p in paths]) == 0
    out = capsys.readouterr().out
    assert "Across training seeds (w0, w1)" in out and "pooled +2.0000" in out and out.count("Table 2") == 2
    assert report.replicate_names([tmp_path / "a" / "w", tmp_path / "b" / "w"]) == [f"1: {tmp_path / 'a' / 'w'}",
                                                                                   f"2: {tmp_path / 'b' / 'w'}"]
    (tmp_path / "bare.json").write_text(json.dumps({"models": {}}))
    with pytest.raises(SystemExit, match="bare.json: not a results.json of identity_control.py with its rows"):
        report.main([str(tmp_path / "bare.json")])


def test_intervals():
    measure = load("identity_measure")
    lo, hi = measure.binomial_chance_interval(160, 1 / 8)
    assert lo < 1 / 8 < hi and hi - lo < 0.12
    assert measure.wilson_interval(20, 20)[1] == pytest.approx(1.0) and measure.wilson_interval(20, 20)[0] > 0.8
    d = measure.paired_bootstrap(np.array([1.0, 2.0, 3.0]), np.array([1.0, 1.0, 1.0]))
    assert d["mean"] == 1.0 and d["ci95"][0] <= 1.0 <= d["ci95"][1]


def test_face_region_motion_reads_the_flow_inside_the_box():
    measure = load("identity_measure")
    flows = np.zeros((2, 32, 32, 2), np.float32)
    flows[:, 8:16, 8:16, 0] = 3.0  # 3 px per step at 32 px inside the face, nothing outside
    boxes = [None, np.array([32, 32, 64, 64]), np.array([32, 32, 64, 64])]  # enlarged-frame pixels (x4)
    assert measure.face_region_motion(flows, boxes, up_px=128, out_px=512) == pytest.approx(3.0 * 16)
    assert measure.face_region_motion(flows, [None, None, None], up_px=128, out_px=512) is None


def test_person_of_takes_the_longest_name():
    bench = load("identity_control")
    assert bench.person_of("group_2_pan_4_sweep8.mp4", ["group", "group_2"]) == "group_2"
    assert bench.person_of("lp_d8_portrait.jpg", ["lp_d8", "lp_d20"]) == "lp_d8"
    assert bench.person_of("coffee.png", ["lp_d8"]) is None


def test_seen_keys_weight_the_slowest_moving_level_and_leave_out_held_out_people(tmp_path):
    """--slow-weight: the seen people's clips nearest the slowest moving build level (labels in the shards' 128-px
    units, a quarter of the 512-px level) are drawn that many times as often; stills and held-out people are not."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    bench = load("identity_control")
    rows = [("k1", "ann_pan_4_sweep8.mp4", False, 4.2 / 4), ("k2", "ann_pan_8_sweep8.mp4", False, 7.6 / 4),
            ("k3", "ann_portrait.jpg", True, 0.0), ("k4", "ann_zoom_0_sweep8.mp4", False, 0.1 / 4),
            ("k5", "bob_pan_4_sweep8.mp4", False, 3.9 / 4)]
    pq.write_table(pa.Table.from_pylist([dict(zip(("key", "clip_id", "static", "intensity"), r)) for r in rows]),
                   tmp_path / "index.parquet")
    out = tmp_path / "keys.txt"
    assert bench.seen_keys(tmp_path, ["ann"], ["ann", "bob"], out) == {"k1", "k2", "k3", "k4"}
    assert out.read_text() == "k1\nk2\nk3\nk4\n"
    bench.seen_keys(tmp_path, ["ann"], ["ann", "bob"], out, slow_weight=3.0, levels=[0.0, 4.0, 8.0])
    assert out.read_text() == "k1\t3\nk2\t1\nk3\t1\nk4\t1\n"
    from human_motion.model.selection import read_selection

    assert read_selection(str(out)) == {"k1": 3.0, "k2": 1.0, "k3": 1.0, "k4": 1.0}  # what training reads


def test_the_shared_start_must_train_on_seen_people_only(tmp_path):
    """A held-out person in --pretrain-people would be trained on: refused before anything is built."""
    bench = load("identity_control")
    with pytest.raises(SystemExit, match="--pretrain-people astronaut,group_2: each must be one of the seen"):
        bench.main(["--work", str(tmp_path / "w"), "--people", "astronaut,hopper,group_2", "--held-out", "group_2",
                    "--pretrain-steps", "10", "--pretrain-people", "astronaut,group_2"])
    assert not (tmp_path / "w" / "shards").exists()


def test_a_replicate_shares_a_finished_run_and_refuses_one_it_would_not_repeat(tmp_path):
    """--replicate-of: the source's build, base, phi and shared start are linked (the training-clip measurements
    copied) when the people and shared start match and a new training seed is given; otherwise one line says why."""
    bench = load("identity_control")
    source, work = tmp_path / "first", tmp_path / "second"
    settings = {"people": ["a", "b", "c"], "held_out": ["c"], "phi_steps": 200, "pretrain_steps": 1000,
                "pretrain_people": ["a", "b"], "slow_weight": 1.0, "train_steps": 1000}
    seed = ["train.seed=1"]
    work.mkdir()
    with pytest.raises(SystemExit, match="first: no finished identity_control run there .* --work .*first first"):
        bench.share_start(work, source, settings, seed)
    for name in ("shards", "base", "phi", "pretrain", "people", "sweeps"):
        (source / name).mkdir(parents=True)
    (source / "sweeps" / "ceiling.json").write_text("[]")
    recorded = {k: v for k, v in settings.items() if k != "slow_weight"}  # a run from before --slow-weight: 1
    (source / "results.json").write_text(json.dumps({**recorded, "models": {}}))
    with pytest.raises(SystemExit, match="its held_out, pretrain_steps differ from this run's"):
        bench.share_start(work, source, {**settings, "held_out": ["b"], "pretrain_steps": 0}, seed)
    with pytest.raises(SystemExit, match="its slow_weight differ"):
        bench.share_start(work, source, {**settings, "slow_weight": 3.0}, seed)
    with pytest.raises(SystemExit, match="its train_steps differ"):  # a replicate at --steps 1500 of a 1000-step run
        bench.share_start(work, source, {**settings, "train_steps": 1500}, seed)
    with pytest.raises(SystemExit, match="give the five runs another seed"):
        bench.share_start(work, source, settings, [])
    (source / "full").mkdir()
    (source / "full" / "config.json").write_text(json.dumps({"train": {"seed": 1}}))
    with pytest.raises(SystemExit, match=r"another seed \(--train-set train.seed=N, not 1\)"):
        bench.share_start(work, source, settings, seed)
    (source / "full" / "config.json").write_text(json.dumps({"train": {"seed": 0}}))
    with pytest.raises(SystemExit, match="this run's own --work"):
        bench.share_start(source, source, settings, seed)
    assert not any(work.iterdir())
    assert bench.share_start(work, source, settings, seed)["people"] == ["a", "b", "c"]
    assert all((work / n).is_symlink() and (work / n).resolve() == source / n for n in bench.SHARED)
    assert (work / "sweeps" / "ceiling.json").read_text() == "[]" and not (work / "sweeps").is_symlink()


def test_a_cached_sweep_is_keyed_by_the_run_weights(tmp_path):
    """A run trained again in the same folder (new weight files) must be measured again, not read from the cache."""
    bench = load("identity_control")
    run = tmp_path / "full"
    for part in ("unet", "adapter"):
        (run / part).mkdir(parents=True)
        (run / part / "diffusion_pytorch_model.safetensors").write_bytes(b"x" * 10)
    ask = (["a", "b"], [0], [0.0, 20.0], 15, 2.0, [0, 7])
    key = bench.sweep_key(run, *ask)
    assert json.loads(json.dumps(key)) == bench.sweep_key(run, *ask)  # as the cache stores and compares it
    assert [w[0] for w in key["weights"]] == ["unet/diffusion_pytorch_model.safetensors",
                                              "adapter/diffusion_pytorch_model.safetensors"]
    weights = run / "unet" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(b"y" * 11)
    assert bench.sweep_key(run, *ask) != key
    assert bench.sweep_key(run, ["a", "b"], [0], [0.0, 20.0], 25, 2.0, [0, 7]) != bench.sweep_key(run, *ask)


@pytest.mark.slow
def test_recipe_end_to_end_at_tiny_steps(tmp_path, capsys):
    bench = load("identity_control")
    work, pictures = tmp_path / "work", tmp_path / "pictures"
    assert bench.main(["--work", str(work), "--steps", "2", "--vae-steps", "2", "--phi-steps", "2",
                       "--pretrain-steps", "2", "--people", "astronaut,hopper,group_2", "--held-out", "group_2",
                       "--levels", "0,20", "--intensities", "0,20", "--ablation-intensities", "0,20", "--seeds", "0",
                       "--ablation-seeds", "0", "--sample-steps", "2", "--threads", "1", "--slow-weight", "3",
                       "--pictures", str(pictures)]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for name in ("full", "no_id", "no_lid", "no_lr", "neither", "no_mcm"):
        assert set(line[name]) >= HEADLINE
    assert len(line["aims_met"]) >= 8
    results = json.loads((work / "results.json").read_text())
    assert len(results["models"]["full"]["rows"]) == 3 * 4 * 2  # everyone x 4 actions x 2 intensities x 1 seed
    for name in ("no_id", "no_lid", "no_lr", "neither", "no_mcm"):
        assert len(results["models"][name]["rows"]) == 2 * 4 * 2  # the seen people only
    # The held-out person is in no training: not in the keys, and each run reads only the keys.
    lines = [line.split("\t") for line in (work / "seen_keys.txt").read_text().splitlines()]
    keys = [k for k, _ in lines]
    assert keys and not any("group_2" in k for k in keys) and any("hopper" in k for k in keys)
    # --slow-weight 3: the clips of the slowest moving level (20, of 0 and 20) drawn three times as often.
    still = [("_0_sweep" in k or "portrait" in k) for k in keys]
    assert any(still) and not all(still)
    assert all(w == ("1" if s else "3") for (_, w), s in zip(lines, still))
    assert results["slow_weight"] == 3.0
    # The shared start: neither loss, on the two pretrain people's samples only; every run starts from its weights.
    start = json.loads((work / "pretrain" / "config.json").read_text())
    assert start["data"]["keys_file"] == str(work / "pretrain_keys.txt")
    assert start["loss"]["id_weight"] == 0 and start["loss"]["region_delta"] == 0
    start_keys = (work / "pretrain_keys.txt").read_text().split()
    assert start_keys and all("astronaut" in k or "hopper" in k for k in start_keys)
    assert any("astronaut" in k for k in start_keys) and any("hopper" in k for k in start_keys)
    assert results["pretrain_steps"] == 2 and results["pretrain_people"] == ["astronaut", "hopper"]
    settings = {name: json.loads((work / name / "config.json").read_text()) for name in bench.VARIANTS}
    for name, cfg in settings.items():
        assert cfg["data"]["keys_file"] == str(work / "seen_keys.txt") and (work / name / "unet").is_dir()
        assert cfg["model"]["unet"] == str(work / "pretrain" / "unet")
        assert cfg["model"]["adapter"] == str(work / "pretrain" / "adapter")
        assert (cfg["loss"]["id_weight"] > 0) == (name in ("full", "no_id", "no_lr"))
        assert (cfg["loss"]["region_delta"] > 0) == (name in ("full", "no_id", "no_lid"))
        assert (cfg["model"]["id_scale"] > 0) == (name != "no_id")
    # What the sweeps measure is each run's own trained UNet, not the shared start it began from.
    from safetensors.torch import load_file

    trained = load_file(str(work / "full" / "unet" / "diffusion_pytorch_model.safetensors"))
    start_weights = load_file(str(work / "pretrain" / "unet" / "diffusion_pytorch_model.safetensors"))
    measured = bench.load_pipeline(work / "full").unet.state_dict()
    changed = [k for k in trained if not torch.equal(trained[k], start_weights[k])]
    assert changed and all(torch.equal(measured[k], trained[k]) for k in changed)
    # Without ID insertion the model is blind to the reference: the same seed gives the same clip for everyone.
    blind = {}
    for r in results["models"]["no_id"]["rows"]:
        blind.setdefault((r["action"], r["asked"]), set()).add((r["measured"], tuple(r["sims"] or ())))
    assert all(len(v) == 1 for v in blind.values())
    # Captions name the kind of motion, never the person.
    import pyarrow.parquet as pq

    index = pq.read_table(work / "shards" / "index.parquet").to_pandas()
    for text in [*index["action"], *index["description"]]:
        assert not any(p in str(text).lower() for p in ("astronaut", "hopper", "group"))
    assert pictures.with_suffix(".png").is_file() and (work / "identity_control_frames.png").is_file()
    from human_motion.model.components import load_face_embedder

    assert load_face_embedder(str(work / "phi")) is not None
    # A replicate: the five runs again with another training seed from the same build, base, phi and shared start,
    # its picture in its own work folder, and the loss effects compared across the two.
    again = tmp_path / "again"
    assert bench.main(["--work", str(again), "--replicate-of", str(work), "--train-set", "train.seed=1", "--steps", "2",
                       "--vae-steps", "2", "--phi-steps", "2", "--pretrain-steps", "2", "--people",
                       "astronaut,hopper,group_2", "--held-out", "group_2", "--levels", "0,20", "--intensities",
                       "0,20", "--ablation-intensities", "0,20", "--seeds", "0", "--ablation-seeds", "0",
                       "--sample-steps", "2", "--threads", "1", "--slow-weight", "3"]) == 0
    out = capsys.readouterr().out
    assert "Across training seeds (work, again)" in out and "pooled" in out
    assert all((again / name).is_symlink() for name in bench.SHARED)
    for name in bench.VARIANTS:
        cfg = json.loads((again / name / "config.json").read_text())
        assert cfg["train"]["seed"] == 1 and cfg["model"]["unet"] == str(again / "pretrain" / "unet")
    assert (again / "identity_control.png").is_file()


def test_tables_aims_and_pictures_from_synthetic_results(tmp_path, capsys):
    """The end of a run on made-up clips: the tables and aims print, the plot and the frames grid are written."""
    report, plots = load("identity_report"), load("identity_control_plots")
    people, seen, held_out = ["a", "b", "c"], ["a", "b"], ["c"]
    rng = np.random.default_rng(0)

    def clips(who, seeds, levels, blind=False):
        return [row(p, [0.9 if (q == p and not blind) else 0.6 + 0.1 * rng.random() for q in people], asked=v,
                    action=k, seed=s, measured=v + rng.random(), face_motion=v / 2)
                for p in who for k in ("horizontal", "vertical", "zoom", "rotation") for v in levels for s in seeds]

    results = {"people": people, "seen": seen, "held_out": held_out, "models": {}}
    plan = {"full": clips(people, (0, 1), (0.0, 10.0, 20.0)), "no_mcm": clips(seen, (0,), (0.0, 20.0)),
            "no_id": clips(seen, (0,), (0.0, 20.0), blind=True),
            **{n: clips(seen, (0,), (0.0, 20.0)) for n in ("no_lid", "no_lr", "neither")}}
    for name, rows in plan.items():
        summary = report.summarise(rows, people, seen)
        results["models"][name] = {"headline": report.headline(summary), **summary, "rows": rows}
    results["aims"] = report.aims(results)
    report.print_tables(results)
    out = capsys.readouterr().out
    assert "Table 2" in out and "Table 3" in out and "| L_id + L_R (full) |" in out and "c: 0.900" in out
    assert out.count("[MET]") + out.count("[NOT MET]") == 8 and out.count("[reported]") == 4
    plots.plot(results, tmp_path / "plot.png")
    frames = {(p, "horizontal", v, 0): rng.integers(0, 255, (8, 32, 32, 3), dtype=np.uint8)
              for p in people for v in (0.0, 20.0)}
    refs = {p: rng.integers(0, 255, (64, 64, 3), dtype=np.uint8) for p in people}
    plots.frames_grid(frames, refs, people, held_out, tmp_path / "frames.png")
    assert (tmp_path / "plot.png").stat().st_size > 10_000 and (tmp_path / "frames.png").is_file()


def test_pixel_identity_names_the_person_whose_training_frames_are_nearest_and_can_leave_a_clip_out():
    measure = load("identity_measure")
    rng = np.random.default_rng(0)
    # Two people: a is dark with a bright square that moves (a pan), b is bright; a third, c, is a's twin but a little
    # brighter. Each has two training clips of four frames.
    def pan(base, shift):
        frame = np.full((16, 16, 3), base, np.uint8)
        frame[4:10, shift:shift + 6] = 230
        return frame

    bank = {"a": (np.stack([pan(30, s) for s in range(8)]), np.array(["a0"] * 4 + ["a1"] * 4)),
            "b": (np.stack([pan(200, s) for s in range(8)]), np.array(["b0"] * 4 + ["b1"] * 4)),
            "c": (np.stack([pan(60, s) for s in range(8)]), np.array(["c0"] * 4 + ["c1"] * 4))}
    pixel = measure.PixelIdentity(bank, ["a", "b", "c"])
    clip = np.stack([pan(34, s) for s in (1, 5, 6)]) + rng.integers(0, 3, (3, 16, 16, 3)).astype(np.uint8)
    sims = pixel.sims(clip)
    assert np.argmax(sims) == 0 and sims[0] > sims[2] > sims[1]
    # Where the square is does not matter: each frame finds its own position among the person's frames.
    assert pixel.sims(pan(30, 2)[None])[0] == pytest.approx(1.0)
    # 1 - RMS in [0, 1]: a frame of 200 against b's frames of 200 is exact; against a's 30 it is 170/255 off where
    # the squares coincide (the 36 square pixels of 256 agree).
    assert pixel.sims(pan(200, 0)[None])[1] == pytest.approx(1.0)
    assert pixel.sims(pan(200, 0)[None])[0] == pytest.approx(1 - 170 / 255 * np.sqrt(220 / 256), abs=1e-4)
    # Leaving clip a0 out, a frame of it is matched against a1's frames only (positions 4-7): further than before.
    frame = pan(30, 0)[None]
    assert pixel.sims(frame, exclude="a0")[0] < pixel.sims(frame)[0] == pytest.approx(1.0)


def test_the_report_reads_a_gzipped_results_file_and_refuses_a_broken_one(tmp_path):
    """identity_report.py re-reads the committed results.json.gz as it is; a truncated one is one line naming it."""
    import gzip

    report = load("identity_report")
    people = ["a", "b"]
    rows = [row(p, [0.9 if q == p else 0.5 for q in people], asked=v, action="horizontal")
            for p in people for v in (0.0, 20.0)]
    results = {"people": people, "seen": people, "held_out": [],
               "models": {"full": {**report.summarise(rows, people, people), "rows": rows}}}
    good, broken = tmp_path / "results.json.gz", tmp_path / "broken.json.gz"
    good.write_bytes(gzip.compress(json.dumps(results).encode()))
    broken.write_bytes(good.read_bytes()[:40])
    (tmp_path / "results.json").write_text(json.dumps(results))
    stored = json.loads(json.dumps(results))  # as written (tuples become lists)
    assert report.read_results(good) == report.read_results(tmp_path / "results.json") == stored
    with pytest.raises(SystemExit, match=r"broken.json.gz: not a results.json of identity_control.py .*EOFError"):
        report.read_results(broken)
    (tmp_path / "results.json").write_text(json.dumps({"models": {}}))  # a run's summary without its rows
    with pytest.raises(SystemExit, match=r"results.json: not a results.json .*KeyError.*give the one a run writes"):
        report.read_results(tmp_path / "results.json")


def test_pixel_aims_join_the_dlib_aims_when_the_run_has_them():
    report = load("identity_report")
    people, seen = ["a", "b"], ["a", "b"]
    rows = {name: [row(p, [0.9 if q == p else 0.5 for q in people], asked=v, action=k)
                   for p in seen for v in (0.0, 20.0) for k in ("horizontal", "zoom")]
            for name in ("full", "no_id", "no_lid", "no_lr", "neither")}
    results = {"people": people, "seen": seen, "models": {}}
    for name, model_rows in rows.items():
        results["models"][name] = {**report.summarise(model_rows, people, seen), "rows": model_rows}
    assert len(report.aims(results)) == 8 + 4
    # The blind model by pixels: every clip nearest person a, so right for half of them (chance for two).
    for name, model_rows in rows.items():
        pixels = [{**r, "sims": [0.9, 0.1] if name == "no_id" else r["sims"]} for r in model_rows]
        results["models"][name]["pixel"] = report.summarise(pixels, people, seen)
    aims = {a["aim"]: a for a in report.aims(results)}
    assert len(aims) == 8 + 5 + 4
    assert aims["full, seen people: identity accuracy >= 0.95 (pixels)"]["met"] is True
    chance = next(a for name, a in aims.items() if name.startswith("no ID insertion") and name.endswith("(pixels)"))
    assert chance["value"] == 0.5 and chance["met"] is True
