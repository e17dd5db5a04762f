"""``hm train`` and ``hm model-info`` end to end on tiny models: outputs, learning, exact resume, clear refusals."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file

import human_motion.model.train as train_module
from human_motion.cli import main
from human_motion.model.adapter import MotionCharacterAdapter

from .shards import write_shards

QUIET = ["--set", "validation.num_samples=0"]


def read_log(out):
    return [json.loads(line) for line in (out / "logs" / "train.jsonl").read_text().splitlines()]


def mark_as_killed_run(out) -> None:
    """Tag every line a killed run logged. A resume keeps the lines up to its checkpoint as they are and logs the
    later steps anew; a run that began again would log every step untagged."""
    path = out / "logs" / "train.jsonl"
    path.write_text("".join(json.dumps({**r, "killed_run": True}) + "\n" for r in read_log(out)))


def logged_steps(out) -> list[tuple[int, bool]]:
    return [(r["step"], "killed_run" in r) for r in read_log(out) if "loss" in r]


def test_train_on_shards_lowers_fixed_batch_loss_and_writes_outputs(tmp_path):
    shards = write_shards(tmp_path / "shards", num_video=2, num_static=0)  # batch 2: the same two clips every step
    out = tmp_path / "run"
    sets = ["train.max_train_steps=12", "train.checkpointing_steps=6", "data.flip_prob=0", "validation.num_samples=1"]
    assert main(["train", str(shards), "--config", "train_tiny", "--out", str(out),
                 *[a for s in sets for a in ("--set", s)]]) == 0
    log = read_log(out)
    val = [r["val_loss"] for r in log if r.get("event") == "validation"]
    assert len(val) == 3 and val[-1] < val[0] * 0.99, val  # steps 0, 6, 12
    assert [r["step"] for r in log if "loss" in r] == list(range(1, 13))
    assert {p.name for p in (out / "checkpoints").iterdir()} == {"checkpoint-6", "checkpoint-12"}
    assert (out / "checkpoints" / "checkpoint-12" / "adapter" / "diffusion_pytorch_model.safetensors").is_file()
    assert sorted(p.name for p in (out / "samples").iterdir()) == [
        "step000000_0.gif", "step000006_0.gif", "step000012_0.gif"]
    adapter = MotionCharacterAdapter.from_pretrained(out / "adapter")  # the new weights alone
    assert adapter.config.id_dim == 128 and len(adapter.config.layers) == 4
    assert json.loads((out / "config.json").read_text())["model"]["id_embedding_kind"] == "dlib"


@pytest.mark.slow
def test_train_on_hm_build_shards(demo_build, tmp_path):
    """The real `hm build` output (demo source: 512x512 clips, dlib embeddings, static portraits) trains as is."""
    out = tmp_path / "run"
    assert main(["train", str(demo_build), "--config", "train_tiny", "--out", str(out), *QUIET,
                 "--set", "train.max_train_steps=8", "--set", "train.checkpointing_steps=4",
                 "--set", "train.dataloader_num_workers=2"]) == 0
    val = [r["val_loss"] for r in read_log(out) if r.get("event") == "validation"]
    assert len(val) == 3 and val[-1] < val[0], val
    assert not [r for r in read_log(out) if r.get("bad_samples")]


def test_kill_and_resume_matches_uninterrupted_run(tmp_path, monkeypatch):
    shards = write_shards(tmp_path / "shards", num_video=3, num_static=2, corrupt=1)
    args = ["train", str(shards), "--config", "train_tiny", *QUIET]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0

    real = train_module.save_checkpoint

    def save_then_die(accelerator, out, step, *rest):
        path = real(accelerator, out, step, *rest)
        if step == 2:
            raise KeyboardInterrupt  # killed right after the first checkpoint
        return path

    monkeypatch.setattr(train_module, "save_checkpoint", save_then_die)
    assert main([*args, "--out", str(tmp_path / "b")]) == 130
    assert logged_steps(tmp_path / "b") == [(1, False), (2, False)]
    mark_as_killed_run(tmp_path / "b")
    monkeypatch.setattr(train_module, "save_checkpoint", real)
    assert main([*args, "--out", str(tmp_path / "b"), "--resume", "latest"]) == 0
    assert logged_steps(tmp_path / "b") == [(1, True), (2, True), (3, False), (4, False)]  # resumed, not begun again

    losses = [[(r["step"], r["loss"]) for r in read_log(tmp_path / run) if "loss" in r] for run in ("a", "b")]
    assert losses[0] == losses[1] and [s for s, _ in losses[0]] == [1, 2, 3, 4]
    a = load_file(tmp_path / "a" / "adapter" / "diffusion_pytorch_model.safetensors")
    b = load_file(tmp_path / "b" / "adapter" / "diffusion_pytorch_model.safetensors")
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)


def test_synthetic_smoke_with_motion_modules(tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--config", "train_tiny", "--out", str(out), *QUIET, "--set", "data.dataset_type=synthetic",
                 "--set", "train.max_train_steps=2", "--set", "model.train_motion_modules=true"]) == 0
    assert (out / "motion_modules" / "diffusion_pytorch_model.safetensors").is_file()
    assert (out / "checkpoints" / "checkpoint-2" / "motion_modules").is_dir()
    # Resuming loads the trained motion modules back through the load hook, then goes on: it ends where a run of 3
    # steps from the start ends.
    mark_as_killed_run(out)
    three = ["train", "--config", "train_tiny", *QUIET, "--set", "data.dataset_type=synthetic",
             "--set", "train.max_train_steps=3", "--set", "model.train_motion_modules=true"]
    assert main([*three, "--out", str(out), "--resume", "latest"]) == 0
    assert logged_steps(out) == [(1, True), (2, True), (3, False)]
    assert main([*three, "--out", str(tmp_path / "straight")]) == 0
    a = load_file(out / "motion_modules" / "diffusion_pytorch_model.safetensors")
    b = load_file(tmp_path / "straight" / "motion_modules" / "diffusion_pytorch_model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_the_first_progress_line_shows_a_loss_before_the_first_logged_step(tmp_path, capsys):
    """Losses are logged every log_every_steps; the console's first line (step 1) must not read "loss nan"."""
    out = tmp_path / "run"
    assert main(["train", *SYNTHETIC, "--out", str(out), "--set", "train.max_train_steps=2",
                 "--set", "train.log_every_steps=10"]) == 0
    first = next(line for line in capsys.readouterr().err.splitlines() if line.startswith("hm train: step 1/2"))
    assert math.isfinite(float(first.split(" loss ")[1].split()[0])), first


def test_wrong_embedding_kind_stops_training_with_a_clear_message(tmp_path, capsys):
    shards = write_shards(tmp_path / "shards", num_video=2, num_static=0, kind="arcface", dim=512)
    rc = main(["train", str(shards), "--config", "train_tiny", "--out", str(tmp_path / "run"), *QUIET])
    err = capsys.readouterr().err
    assert rc == 2 and "'arcface' identity embedding (512-d)" in err and "expects 'dlib' (128-d)" in err


def test_bad_config_is_refused_before_loading(tmp_path, capsys):
    rc = main(["train", "--config", "train_tiny", "--out", str(tmp_path), "--set", "model.id_embedding_dim=512"])
    assert rc == 2 and "does not match model.id_embedding_kind='dlib'" in capsys.readouterr().err


@pytest.mark.parametrize("setting, message", [
    ("model.projector_heads=0", "model.projector_heads=0: the adapter's token counts and layer sizes must be >= 1"),
    ("model.projector_heads=7", "model.projector_width (32) must be a multiple of model.projector_heads (7)"),
    ("model.num_action_tokens=-1", "model.num_action_tokens=-1:"),
    ("model.max_intensity=0", "model.max_intensity must be > 0"),
])
def test_model_sizes_that_cannot_build_are_refused(capsys, setting, message):
    assert main(["model-info", "--config", "train_tiny", "--set", setting]) == 2  # was a ZeroDivisionError
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err


def test_more_frames_than_the_motion_modules_hold_is_refused(tmp_path, capsys):
    rc = main(["train", "--config", "train_tiny", "--out", str(tmp_path / "run"), *QUIET,
               "--set", "data.dataset_type=synthetic", "--set", "data.num_frames=40"])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert rc == 2 and "data.num_frames=40 is more than the motion modules' positional encoding holds (32)" in err


def test_model_info_tiny(capsys):
    assert main(["model-info", "--config", "train_tiny", "--json", "--flops"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["adapter: id projector"]["trainable"] > 0 and info["vae"]["trainable"] == 0
    assert info["unet (SD 2D layers)"]["frozen"] > 0 and info["unet (SD 2D layers)"]["gflops_whole_unet"] > 0
    assert info["vae"]["gflops_decode"] > info["vae"]["gflops_encode"] > 0


def test_bf16_and_gradient_checkpointing_smoke(tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--config", "train_tiny", "--out", str(out), *QUIET, "--set", "data.dataset_type=synthetic",
                 "--set", "train.max_train_steps=2", "--set", "train.mixed_precision=bf16",
                 "--set", "train.gradient_checkpointing=true"]) == 0
    log = [r for r in read_log(out) if "loss" in r]
    assert [r["step"] for r in log] == [1, 2] and all(r["loss"] == r["loss"] for r in log)  # finite, not NaN
    assert MotionCharacterAdapter.from_pretrained(out / "adapter").dtype == torch.float32  # trainable kept in fp32


@pytest.mark.slow
def test_sigkill_and_resume_matches_uninterrupted_run(tmp_path, capsys):
    """A real kill at a moment the test sets: `hm train` in a subprocess sends itself SIGKILL right after logging
    step 3 (tests/model/kill_train.py), past checkpoint-2 and before checkpoint-4. The resume keeps steps 1-2, drops
    the logged step 3, runs steps 3 and 4 again and ends exactly as the uninterrupted run."""
    import os
    import pathlib
    import signal
    import subprocess
    import sys

    shards = write_shards(tmp_path / "shards", num_video=3, num_static=1)
    args = [str(shards), "--config", "train_tiny", *QUIET]  # 4 steps, checkpoints at 2 and 4
    assert main(["train", *args, "--out", str(tmp_path / "a")]) == 0

    repo = pathlib.Path(__file__).resolve().parents[2]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",  # one thread as here: the same float sums
           "PYTHONPATH": os.pathsep.join([str(repo), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-m", "tests.model.kill_train", "3", *args, "--out", str(tmp_path / "b")],
                          env=env, cwd=repo, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]  # killed, not run to the end
    b = tmp_path / "b"
    assert [r["step"] for r in read_log(b) if "loss" in r] == [1, 2, 3]
    assert [p.name for p in (b / "checkpoints").iterdir()] == ["checkpoint-2"] and not (b / "adapter").exists()
    mark_as_killed_run(b)
    assert main(["train", *args, "--out", str(b), "--resume", "latest"]) == 0
    assert f"resuming from {b / 'checkpoints' / 'checkpoint-2'}" in capsys.readouterr().err
    assert logged_steps(b) == [(1, True), (2, True), (3, False), (4, False)]  # 1-2 kept, the logged 3 dropped

    losses = [[(r["step"], r["loss"]) for r in read_log(tmp_path / run) if "loss" in r] for run in ("a", "b")]
    assert losses[0] == losses[1] and [s for s, _ in losses[0]] == [1, 2, 3, 4]
    a = load_file(tmp_path / "a" / "adapter" / "diffusion_pytorch_model.safetensors")
    b = load_file(tmp_path / "b" / "adapter" / "diffusion_pytorch_model.safetensors")
    assert all((a[k] == b[k]).all() for k in a)


@pytest.mark.slow
def test_two_process_data_parallel_resumes_exactly(tmp_path):
    """DDP through accelerate (gloo on CPU, 2 processes): per-rank data positions, and a resume from checkpoint-2
    ends with the same adapter as the uninterrupted run."""
    import os
    import shutil
    import subprocess
    import sys

    shards = write_shards(tmp_path / "shards", num_video=3, num_static=2, corrupt=1)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "1"}

    def launch(out, *extra):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "human_motion.cli", "train", str(shards), "--config", "train_tiny", *QUIET, "--out", str(out),
               *extra]
        subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    launch(tmp_path / "a")
    checkpoint = tmp_path / "a" / "checkpoints" / "checkpoint-2"
    assert {p.name for p in checkpoint.glob("train_state_rank*.json")} == {"train_state_rank0.json",
                                                                             "train_state_rank1.json"}
    (tmp_path / "b" / "checkpoints").mkdir(parents=True)
    shutil.copytree(checkpoint, tmp_path / "b" / "checkpoints" / "checkpoint-2")
    launch(tmp_path / "b", "--resume", "latest")
    a = load_file(tmp_path / "a" / "adapter" / "diffusion_pytorch_model.safetensors")
    b = load_file(tmp_path / "b" / "adapter" / "diffusion_pytorch_model.safetensors")
    assert all((a[k] == b[k]).all() for k in a)
    losses = [{r["step"]: r["loss"] for r in read_log(tmp_path / run) if "loss" in r} for run in ("a", "b")]
    assert {k: v for k, v in losses[0].items() if k > 2} == losses[1]


def snapshot(folder) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


SYNTHETIC = ["--config", "train_tiny", *QUIET, "--set", "data.dataset_type=synthetic",
             "--set", "validation.fixed_batch_loss=false", "--set", "train.log_with=none"]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A 2-step synthetic run with its checkpoint-2, made once; tests copy it before changing anything."""
    from accelerate.state import AcceleratorState

    out = tmp_path_factory.mktemp("finished") / "run"
    assert main(["train", *SYNTHETIC, "--out", str(out), "--set", "train.max_train_steps=2"]) == 0
    AcceleratorState._reset_state(reset_partial_state=True)
    return out


def test_a_run_is_never_overwritten_by_accident(finished_run, tmp_path, capsys):
    import shutil

    out = tmp_path / "run"
    shutil.copytree(finished_run, out)
    (out / "notes.txt").write_text("mine")
    before = snapshot(out)
    assert main(["train", *SYNTHETIC, "--out", str(out), "--set", "train.max_train_steps=2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(out) in err[0] and "--resume" in err[0] and "--overwrite" in err[0]
    assert snapshot(out) == before  # byte for byte
    assert main(["train", *SYNTHETIC, "--out", str(out), "--resume", "--overwrite"]) == 2
    assert snapshot(out) == before

    # --resume with another model is refused; without --config it takes the run's own config.
    assert main(["train", *SYNTHETIC, "--out", str(out), "--set", "model.num_action_tokens=4", "--resume"]) == 2
    assert "trained with model.num_action_tokens=6, this command gives 4" in capsys.readouterr().err
    assert snapshot(out) == before
    # --resume (no value: the last checkpoint) continues at step 3.
    mark_as_killed_run(out)
    assert main(["train", "--out", str(out), "--set", "train.max_train_steps=3", "--resume"]) == 0
    assert logged_steps(out) == [(1, True), (2, True), (3, False)]
    # --overwrite starts again and removes only what a run writes.
    assert main(["train", *SYNTHETIC, "--out", str(out), "--set", "train.max_train_steps=1", "--overwrite"]) == 0
    assert [r["step"] for r in read_log(out) if "loss" in r] == [1]
    assert {p.name for p in (out / "checkpoints").iterdir()} == {"checkpoint-1"}
    assert (out / "notes.txt").read_text() == "mine"


class Evil:
    def __reduce__(self):
        return (print, ("UNPICKLED",))


@pytest.mark.parametrize("damage", ["pickled_optimizer", "truncated_adapter"])
def test_a_damaged_checkpoint_is_refused_in_one_line(finished_run, tmp_path, capsys, damage):
    import pickle
    import shutil

    out = tmp_path / "run"
    shutil.copytree(finished_run, out)
    checkpoint = out / "checkpoints" / "checkpoint-2"
    if damage == "pickled_optimizer":  # code where tensors belong: must never run
        (checkpoint / "optimizer.bin").write_bytes(pickle.dumps(Evil()))
    else:
        path = checkpoint / "adapter" / "diffusion_pytorch_model.safetensors"
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    rc = main(["train", *SYNTHETIC, "--out", str(out), "--set", "train.max_train_steps=3", "--resume"])
    captured = capsys.readouterr()
    err = [line for line in captured.err.splitlines() if line.startswith("hm train: error")]
    assert rc == 2 and len(err) == 1 and str(checkpoint) in err[0] and "--overwrite" in err[0]
    assert "UNPICKLED" not in captured.out + captured.err


def test_shards_of_bad_samples_stop_in_one_line(tmp_path, capsys):
    shards = write_shards(tmp_path / "shards", num_video=0, num_static=0, corrupt=3)
    rc = main(["train", str(shards), "--config", "train_tiny", *QUIET, "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err[-1].startswith("hm train: error: ") and str(shards) in err[-1]
    assert "were bad (decode_failed" in err[-1] and "hm verify" in err[-1]
    # Nothing was trained: the same command runs again (here: fails again the same way) without --overwrite.
    assert main(["train", str(shards), "--config", "train_tiny", *QUIET, "--out", str(tmp_path / "run")]) == 2
    assert "already holds" not in capsys.readouterr().err
    assert main(["train", str(tmp_path / "none"), "--config", "train_tiny", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("none: no such folder or file; pass the output folder of `hm build` "
                        "(or a shard pattern such as data/{000000..000009}.tar)")


def test_help_lists_every_packaged_config_and_the_defaults(capsys):
    import pathlib

    with pytest.raises(SystemExit) as e:
        main(["train", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    configs = pathlib.Path(train_module.__file__).parents[1] / "configs"
    names = sorted(p.stem for p in configs.glob("train*.yaml"))
    assert e.value.code == 0 and "train_intensity" in names
    assert f"({', '.join(names)}) (default: train; with --resume the run's own config.json)" in out
    assert "--resume [CHECKPOINT]" in out and "--overwrite" in out and "(default: None)" not in out
