"""The action-and-intensity recipe (benchmarks/action_control.py) end to end at a few steps, so it cannot rot: a demo
build with action phrases, the base, three ``hm train`` runs (full, no intensity branch, no action branch), the
pipeline sweep measured with the build's flow, the summary, the pictures and the one-line JSON."""

from __future__ import annotations

import importlib.util
import json
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
KEYS = ("action_accuracy", "intensity_spearman_pooled", "intensity_spearman_min_action", "intensity_mae",
        "intensity_spread_across_actions")


def load_benchmark():
    spec = importlib.util.spec_from_file_location("action_control", ROOT / "benchmarks" / "action_control.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def test_a_run_that_stopped_early_goes_on_from_its_checkpoint_or_trains_again_and_a_finished_one_is_reused(
        tmp_path, monkeypatch):
    bench = load_benchmark()
    recipe = importlib.import_module(bench.train_runs.__module__)
    calls = {}

    class Done:
        def wait(self):
            return 0

    def fake_hm(*args, threads, log_file=None, wait=True):
        calls[pathlib.Path(args[args.index("--out") + 1]).name] = args
        return Done()

    monkeypatch.setattr(recipe, "hm", fake_hm)
    (tmp_path / "finished" / "adapter").mkdir(parents=True)
    (tmp_path / "finished" / "unet").mkdir()
    for name in ("stopped", "checkpointed"):
        (tmp_path / name / "logs").mkdir(parents=True)
        (tmp_path / name / "config.json").write_text("{}")
    (tmp_path / "checkpointed" / "checkpoints" / "checkpoint-5").mkdir(parents=True)
    (tmp_path / "checkpointed" / "checkpoints" / "checkpoint-5" / "train_state_rank0.json").write_text("{}")
    (tmp_path / "stopped" / "checkpoints" / "checkpoint-9").mkdir(parents=True)  # cut off while saving: not one
    names = ("new", "finished", "stopped", "checkpointed")
    runs = recipe.train_runs(tmp_path, {n: [] for n in names}, tmp_path / "shards", tmp_path / "base", "train_action",
                             10, 2, "dlib", 128, [])
    assert set(runs) == set(names) and set(calls) == {"new", "stopped", "checkpointed"}
    assert "--overwrite" in calls["stopped"] and "--resume" not in calls["stopped"]
    assert "--resume" in calls["checkpointed"] and "--overwrite" not in calls["checkpointed"]
    assert "--resume" not in calls["new"] and "--overwrite" not in calls["new"]


def test_summary_of_known_rows():
    bench = load_benchmark()
    rows = []
    for kind, measured_at in (("horizontal", (1, 5, 11)), ("vertical", (1, 6, 9)), ("zoom", (1, 4, 10)),
                              ("rotation", (2, 3, 12))):
        for asked, measured in zip((0.0, 5.0, 10.0), measured_at):
            found = "zoom" if (kind, asked) == ("rotation", 5.0) else kind
            rows.append({"action": kind, "asked": asked, "measured": float(measured), "found": found})
    s = bench.summarise(rows)
    assert s["confusion"]["n"] == 8 and s["action_accuracy"] == 7 / 8
    assert s["confusion"]["matrix"]["rotation"]["zoom"] == 1
    assert s["by_level"]["5"]["accuracy"] == 0.75
    assert s["by_level"]["5"]["spread_across_actions"] == 6 - 3
    assert s["intensity_by_action"]["horizontal"]["spearman"] == pytest.approx(1.0)
    h = bench.headline(s)
    assert set(h) == set(KEYS)
    assert h["intensity_spread_across_actions"] == pytest.approx(round((1 + 3 + 3) / 3, 2))


def test_every_action_phrase_is_one_kind_and_the_demo_speeds_span_the_levels():
    bench = load_benchmark()
    assert {bench.kind_of_action(p) for p in bench.ACTIONS.values()} == set(bench.ACTIONS)
    options = bench.demo_options([0.0, 10.0, 20.0], ["astronaut"])
    assert options["pan_px"] == [0.0, 10.0, 20.0] and options["rotate_deg"] == [0.0, 2.5, 5.0]
    assert options["action_phrases"] is True


@pytest.mark.slow
def test_recipe_end_to_end_at_tiny_steps(tmp_path, capsys):
    bench = load_benchmark()
    work, pictures = tmp_path / "work", tmp_path / "pictures"
    assert bench.main(["--work", str(work), "--steps", "2", "--vae-steps", "2", "--levels", "0,20",
                       "--intensities", "0,20", "--seeds", "0", "--photos", "astronaut", "--sample-steps", "2",
                       "--threads", "1", "--pictures", str(pictures)]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for part in (line, line["without_intensity_branch"], line["without_action_branch"]):
        assert set(KEYS) <= set(part)
    results = json.loads((work / "results.json").read_text())
    for name in ("full", "no_intensity", "no_action"):
        assert len(results["models"][name]["rows"]) == 4 * 2  # 4 actions x 2 intensities x 1 seed x 1 photo
        assert (work / name / "unet").is_dir()
    for suffix in (".png", ".gif"):
        assert pictures.with_suffix(suffix).is_file()
    assert (tmp_path / "pictures_frames.png").is_file()
    # The build named each kind, never a speed, and labelled it with its measured intensity.
    import pyarrow.parquet as pq

    index = pq.read_table(work / "shards" / "index.parquet").to_pandas()
    moving = index[~index["static"]]
    assert set(moving["action"]) == set(bench.ACTIONS.values()) and len(moving) == 4 * 2
    for _, clips in moving.groupby("action"):  # each kind at level 0 and level 20, labelled by the build's DIS
        assert sorted(clips["intensity"] * bench.UNIT) == [pytest.approx(0, abs=2), pytest.approx(20, abs=4)]
    # Each ablation is blind to its branch: the same seed gives the same clip whatever that branch is asked.
    by = {(r["action"], r["asked"]): r["measured"] for r in results["models"]["no_action"]["rows"]}
    assert len({by[(k, 20.0)] for k in bench.ACTIONS}) == 1
    by = {(r["action"], r["asked"]): r["measured"] for r in results["models"]["no_intensity"]["rows"]}
    assert all(by[(k, 0.0)] == by[(k, 20.0)] for k in bench.ACTIONS)
