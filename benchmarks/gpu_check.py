"""Every GPU figure the project owes, in one command that fits the GPU machine's minutes (issue 19).

    # here: wheels for the GPU machine and decoded dev windows, under .gpu_check/ (git-ignored)
    .venv/bin/python benchmarks/prepare_gpu_check.py
    # on the GPU machine (DEVELOPERS.md has the exact device call): writes gpu_check.json and gpu_check.md
    python3 benchmarks/gpu_check.py --frames .gpu_check/frames.npy --out "$OUT"
    # here, on the CPU: every section at tiny shapes (the test suite runs this)
    .venv/bin/python benchmarks/gpu_check.py --dry-run --out /tmp/gpu_check

Sections, in this order: env (GPU, driver, torch/CUDA, what scripts/setup.sh plans here), raft (RAFT small/large,
fp32/fp16/bf16, EPE against fp32, DIS on the CPU for the ratio), flow_stage (the build's flow stage on the carried
16-frame 512x512 dev windows: windows/s against DIS), flops (adapters' FLOPs over the bare UNet), train_step (the
paper's step with and without the adapters and the ID loss), generate (16x512x512, 30 steps, fp16, with and without
CPU offload), pytest_gpu (``pytest -m gpu``). Each runs guarded: a failure is recorded with its traceback and the
next section runs. ``--budget-s`` is the time for all sections; one that needs more than is left is skipped and
says so, and long sections stop starting new settings at the deadline. Both files are rewritten after every
section, so a run cut short keeps what it measured. Weights are random everywhere: speed, memory and the precision
differences are real; what the models output is not.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import pathlib
import platform
import subprocess
import sys
import tempfile
import time
import traceback
import xml.etree.ElementTree as ET
from importlib import metadata

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@dataclasses.dataclass
class Check:
    dry_run: bool
    device: str
    frames: str | None
    budget_s: float
    start: float = dataclasses.field(default_factory=time.monotonic)

    @property
    def deadline(self) -> float:
        return self.start + self.budget_s

    def left(self) -> float:
        return self.deadline - time.monotonic()


def windows(check: Check) -> tuple[np.ndarray, str]:
    """The carried dev windows (n, 16, 512, 512, 3) uint8. The dry run takes 3 frames of the first at 128 px, or
    without the file one synthetic 3-frame 128-px window (a noise texture panning 3 px a frame)."""
    path = pathlib.Path(check.frames) if check.frames else None
    if path and path.is_file():
        data = np.load(path, mmap_mode="r")
        if data.ndim != 5 or data.shape[-1] != 3 or data.dtype != np.uint8:
            raise ValueError(f"{path}: expected (windows, frames, px, px, 3) uint8, got {data.shape} {data.dtype}; "
                             "make it again with benchmarks/prepare_gpu_check.py")
        if check.dry_run:
            step = max(1, data.shape[2] // 128)
            return np.ascontiguousarray(data[:1, :3, ::step, ::step]), f"1 window of {path}, 3 frames, 1/{step} size"
        return np.ascontiguousarray(data), f"{len(data)} dev windows from {path}"
    if not check.dry_run:
        raise FileNotFoundError(f"--frames {path}: no such file; run benchmarks/prepare_gpu_check.py here and carry "
                                ".gpu_check")
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 255, (128, 160, 3), dtype=np.uint8)
    texture = np.repeat(np.repeat(texture[::4, ::4], 4, 0), 4, 1)  # 4-px blocks: something flow can follow
    frames = np.stack([texture[:, 3 * i:3 * i + 128] for i in range(3)])
    return frames[None], "1 synthetic window (dry run)"


def flow_stage(overrides: list[str]):
    """The build's flow stage, made from ``hm build`` settings; returns windows (n, t, px, px, 3) -> intensities.

    The one place this check touches the stage API (keep it in step: the test suite runs ``--dry-run``)."""
    from human_motion.config import load_config
    from human_motion.stages.flow import FlowConfig, FlowIntensity
    from human_motion.types import Row

    # The stage receives its own section only: the flow.* settings.
    stage = FlowIntensity(load_config(FlowConfig, None, [o.removeprefix("flow.") for o in overrides
                                                         if o.startswith("flow.")]))

    def run(batch: np.ndarray) -> list[float]:
        rows = [Row(0, i, 1, {"clip_id": f"w{i}", "static": False, "scores": {}, "fps": 4.0,
                              "num_frames": len(w), "status": "ok"}, frames=np.asarray(w))
                for i, w in enumerate(batch)]
        out = stage.process_rows(rows)
        bad = [r.record for r in out if not r.ok]
        if bad:
            raise RuntimeError(f"the flow stage rejected {len(bad)} window(s): {bad[0]['status']} {bad[0]['detail']}")
        return [r.record["intensity"] for r in out]

    return run


# ------------------------------------------------------------------------------------------------------- sections
def section_env(check: Check) -> dict:
    import torch

    cuda = torch.cuda.is_available()
    smi = _run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"])
    plan = _run(["bash", str(REPO / "scripts" / "setup.sh"), "--plan"])
    packages = {}
    for name in ("torchvision", "diffusers", "transformers", "accelerate", "huggingface_hub", "ptflops", "numpy",
                 "opencv-python-headless", "onnxruntime", "onnxruntime-gpu"):
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    try:
        import onnxruntime

        providers = onnxruntime.get_available_providers()
    except ImportError:
        providers = []
    data = {"python": platform.python_version(), "torch": torch.__version__, "torch_cuda": torch.version.cuda,
            "cuda_available": cuda, "cudnn": torch.backends.cudnn.version() if cuda else None,
            "gpu": torch.cuda.get_device_name() if cuda else None,
            "gpu_memory_gib": torch.cuda.get_device_properties(0).total_memory / 2**30 if cuda else None,
            "nvidia_smi": smi, "setup_plan": plan, "packages": packages, "onnxruntime_providers": providers,
            "cpu_count": os.cpu_count()}
    kind = "gpu" if "plan: gpu machine" in plan else "cpu" if "plan: cpu machine" in plan else "?"
    what = plan.splitlines()[1] if plan.count("\n") else plan  # the torch line of the plan
    rows = [["GPU", f"{data['gpu'] or 'none'}" + (f", {data['gpu_memory_gib']:.0f} GiB" if cuda else ""),
             f"nvidia-smi: {smi or 'absent'}"],
            ["torch", f"{torch.__version__} (CUDA {torch.version.cuda or 'none'}, GPU visible: {cuda})",
             f"Python {data['python']}, cuDNN {data['cudnn']}"],
            ["scripts/setup.sh here", f"plans the {kind.upper()} stack", what],
            ["onnxruntime providers", ", ".join(providers) or "onnxruntime missing", ""]]
    return {"data": data, "rows": rows}


def section_raft(check: Check) -> dict:
    from raft_throughput import measure

    frames, source = windows(check)
    frames = frames[0] if not check.dry_run else frames[0, :2]  # the dry run: one pair at RAFT's smallest input
    precisions = ["fp32", "bf16"] if not check.device.startswith("cuda") else ["fp32", "fp16", "bf16"]
    iters, repeats = (1, 1) if check.dry_run else (12, 5)
    res = measure(frames, ["raft_small", "raft_large"], precisions, iters, repeats, check.device, random_init=True,
                  deadline=check.deadline)
    res["frames"] = source
    base = res["baseline"]
    rows = [["DIS (CPU)", f"{base['pairs_per_s']:.3g} pairs/s", f"{res['pairs']} pairs at {res['px']} px"]]
    for r in res["runs"]:
        epe = f", EPE vs fp32 {r['epe_vs_fp32_px']:.3f} px" if r["precision"] != "fp32" else ""
        rows.append([f"{r['backend']} {r['precision']}", f"{r['pairs_per_s']:.3g} pairs/s ({r['vs_dis']:.3g}x DIS)",
                     f"{iters} iterations, random weights{epe}{_memory(r['peak_gpu_gib'])}"])
    rows += [[f"{name}", "not run", "time budget"] for name in res["not_run"]]
    return {"data": res, "rows": rows}


def section_flow_stage(check: Check) -> dict:
    data, source = windows(check)
    px, repeats = data.shape[2], 1 if check.dry_run else 3
    precision = "bf16" if not check.device.startswith("cuda") else "fp16"
    from raft_throughput import random_weights

    base = [f"decode.size_px={px}", f"decode.num_frames={data.shape[1]}"]
    runs, not_run = [], []
    with tempfile.TemporaryDirectory() as tmp:
        specs = [("dis", "cpu", [f"flow.work_px={min(256, px)}"])]
        specs += [(b, check.device, [f"flow.work_px={px}", f"flow.precision={precision}", f"flow.device={check.device}",
                                     f"flow.raft_weights={random_weights(b, tmp)}",
                                     f"flow.raft_iters={1 if check.dry_run else 12}"])
                  for b in ("raft_small", "raft_large")]
        for backend, device, sets in specs:
            if runs and time.monotonic() > check.deadline:
                not_run.append([f"flow stage {backend}", "not run", "time budget"])
                continue
            run = flow_stage([*base, f"flow.backend={backend}", *sets])
            run(data[:1])  # warm-up (cuDNN picks its kernels on the first call)
            start = time.perf_counter()
            for _ in range(repeats):
                intensities = run(data)
            seconds = time.perf_counter() - start
            runs.append({"backend": backend, "device": device, "settings": sets,
                         "windows_per_s": len(data) * repeats / seconds, "intensities": intensities})
    rows = []
    for r in runs:
        r["vs_dis"] = r["windows_per_s"] / runs[0]["windows_per_s"]
        values = [s.split("=", 1)[1] for s in r["settings"][:2]]
        note = f"CPU, work_px {values[0]}" if r["backend"] == "dis" else \
            f"{r['device']}, work_px {values[0]}, {values[1]}, random weights"
        rows.append([f"flow stage {r['backend']}", f"{r['windows_per_s']:.3g} windows/s ({r['vs_dis']:.3g}x DIS)",
                     f"{note}, {len(data)} windows of {data.shape[1]}x{px}x{px}"])
    return {"data": {"windows": source, "shape": list(data.shape), "repeats": repeats, "runs": runs},
            "rows": rows + not_run}


def section_flops(check: Check) -> dict:
    from gpu_check_model import adapter_flops

    res = adapter_flops(check.dry_run)
    rows = [["FLOPs: adapters over bare UNet", f"{100 * res['overhead']:+.1f}% (goal <= 10%)",
             f"{_num(res['gflops_with_adapters'])} vs {_num(res['gflops_bare_unet'])} GFLOPs a step, batch 1, "
             f"{res['frames']}x{res['resolution']}x{res['resolution']}, {res['config']}; counted on shapes (meta "
             "device), attention included"]]
    return {"data": res, "rows": rows}


def section_train_step(check: Check) -> dict:
    from gpu_check_model import train_steps

    res = train_steps(check.dry_run, check.device, check.deadline)
    rows = []
    for r in res["runs"]:
        name = f"train {r['variant']}, batch {r['batch']}, ckpt {'on' if r['checkpointing'] else 'off'}"
        if "error" in r:
            rows.append([name, "failed", r["error"]])
        else:
            ratio = f" ({r['vs_bare']:.3f}x bare)" if r["variant"] != "bare" and r["vs_bare"] else ""
            rows.append([name, f"{r['s_per_step']:.3g} s/step{ratio}", f"{r['trainable_m']:.1f} M trainable, "
                         f"{res['mixed_precision']}, {res['config']}{_memory(r['peak_gib'])}"])
    rows += [[f"train {r['variant']}, batch {r['batch']}, ckpt {'on' if r['checkpointing'] else 'off'}", "not run",
              "time budget"] for r in res["not_run"]]
    return {"data": res, "rows": rows}


def section_generate(check: Check) -> dict:
    from gpu_check_model import generation

    res = generation(check.dry_run, check.device, check.deadline)
    size = f"{res['frames']}x{res['resolution']}x{res['resolution']}, {res['steps']} steps, guidance 8, {res['dtype']}"
    rows = [[f"generate, CPU offload {'on' if r['cpu_offload'] else 'off'}",
             "not run" if "skipped" in r else f"{r['seconds']:.3g} s a video",
             r["skipped"] if "skipped" in r else f"{size}{_memory(r['peak_gib'])}"] for r in res["runs"]]
    return {"data": res, "rows": rows}


def gpu_test_modules() -> list[str]:
    """The test files that mark a test ``gpu``, relative to the repository."""
    return sorted(str(p.relative_to(REPO)) for p in (REPO / "tests").rglob("test_*.py")
                  if "pytest.mark.gpu" in p.read_text(encoding="utf-8"))


def section_pytest_gpu(check: Check) -> dict:
    """``pytest -m gpu`` on the test modules that mark gpu tests (collecting the others would import PyAV and dlib,
    which the GPU machine's image lacks). In the dry run the same modules are collected and their gpu tests skip
    without CUDA: a module that cannot be imported there shows as an error."""
    paths = gpu_test_modules()
    with tempfile.TemporaryDirectory() as tmp:
        xml = pathlib.Path(tmp) / "junit.xml"
        cmd = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider",
               "--continue-on-collection-errors", f"--junitxml={xml}", *paths]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
        timeout = max(30.0, check.left())
        try:
            proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
            output, code = proc.stdout + proc.stderr, proc.returncode
        except subprocess.TimeoutExpired as e:
            output, code = f"{e.stdout or ''}{e.stderr or ''}\n(killed after {timeout:.0f} s)", None
        counts, failed = _junit(xml) if xml.is_file() else ({}, [])
    summary = next((line for line in reversed(output.splitlines()) if " in " in line and "=" not in line[:1]), "")
    data = {"command": " ".join(cmd[1:]), "exit_code": code, "counts": counts, "failed": failed,
            "summary": summary.strip("= "), "output_tail": output[-4000:]}
    text = ", ".join(f"{v} {k}" for k, v in counts.items() if v) or "no result"
    return {"data": data, "rows": [["pytest -m gpu", text, f"exit {code}; " + "; ".join(failed[:5])]]}


def _junit(path: pathlib.Path) -> tuple[dict, list[str]]:
    """(passed/failed/errors/skipped counts, ids of failed or erroring tests) from pytest's JUnit XML."""
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root)
    counts = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0}
    failed = []
    for suite in suites:
        for case in suite.iter("testcase"):
            kind = next((c.tag for c in case if c.tag in ("failure", "error", "skipped")), "passed")
            key = {"failure": "failed", "error": "errors"}.get(kind, kind)
            counts[key] += 1
            if key in ("failed", "errors"):
                failed.append(f"{case.get('classname')}::{case.get('name')}")
    return counts, failed


def _run(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


# (name, seconds it needs at least to be worth starting on the GPU machine, function)
SECTIONS = [("env", 5, section_env), ("raft", 30, section_raft), ("flow_stage", 20, section_flow_stage),
            ("flops", 10, section_flops), ("train_step", 90, section_train_step), ("generate", 45, section_generate),
            ("pytest_gpu", 45, section_pytest_gpu)]


def write_report(report: dict, out: pathlib.Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_check.json").write_text(json.dumps(report, indent=1, default=str))
    env = report["sections"].get("env", {}).get("data", {})
    lines = [f"# GPU check {report['started']}{' (dry run: tiny shapes on the CPU)' if report['dry_run'] else ''}",
             "", f"Device: {env.get('gpu') or report['device']}; torch {env.get('torch', '?')}; commit "
             f"{report['commit']}; {report['elapsed_s']:.0f} s of a {report['budget_s']:.0f} s budget. Random weights "
             "throughout: speed, memory and precision differences are real, the outputs are not.", "",
             "| section | measurement | value | notes |", "|---|---|---|---|"]
    for name, sec in report["sections"].items():
        if sec["status"] != "ok":
            why = sec["error"].strip().splitlines()[-1] if sec.get("error") else sec.get("reason", "")
            lines.append(f"| {name} | - | {sec['status']} | {_cell(why)} |")
        for row in sec.get("rows", []):
            lines.append(f"| {name} | " + " | ".join(_cell(str(v)) for v in row) + " |")
    (out / "gpu_check.md").write_text("\n".join(lines) + "\n")


def _memory(gib: float | None) -> str:
    return "" if gib is None else f", peak {gib:.2f} GiB"


def _num(value: float) -> str:
    return f"{value:,.0f}" if value >= 1000 else f"{value:.4g}"


def _cell(text: str) -> str:
    return text.replace("|", "/").replace("\n", " ")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(REPO / "out" / "gpu_check"), help="folder for gpu_check.json/.md")
    ap.add_argument("--frames", default=str(REPO / ".gpu_check" / "frames.npy"),
                    help="decoded dev windows from benchmarks/prepare_gpu_check.py")
    ap.add_argument("--budget-s", type=float, default=420.0, help="seconds for all sections together")
    ap.add_argument("--dry-run", action="store_true", help="tiny shapes on the CPU: every step, no figures")
    ap.add_argument("--only", default=None, help="comma-separated sections (default: all)")
    ap.add_argument("--device", default="auto", help="auto: cuda when visible (cpu in the dry run)")
    args = ap.parse_args(argv)

    import torch

    if args.dry_run:  # its figures mean nothing; one thread keeps it from fighting the test suite's processes
        torch.set_num_threads(1)
    device = args.device if args.device != "auto" else "cpu" if args.dry_run or not torch.cuda.is_available() \
        else "cuda"
    names = [n for n, _, _ in SECTIONS]
    only = args.only.split(",") if args.only else names
    unknown = sorted(set(only) - set(names))
    if unknown:
        ap.error(f"--only: unknown section(s) {unknown}; choose from {names}")
    check = Check(args.dry_run, device, args.frames, args.budget_s)
    out = pathlib.Path(args.out)
    prepared = pathlib.Path(args.frames).with_name("manifest.json")  # the GPU machine gets the tree without .git
    manifest = json.loads(prepared.read_text()) if prepared.is_file() else {}
    commit = _run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"]) or \
        f"{manifest.get('commit', 'unknown')[:7]} (prepared)"
    report = {"started": datetime.datetime.now().isoformat(timespec="seconds"), "commit": commit, "prepared": manifest,
              "dry_run": args.dry_run, "device": device, "budget_s": args.budget_s, "elapsed_s": 0.0, "sections": {}}
    for name, needs_s, fn in SECTIONS:
        if name not in only:
            continue
        needs = 0 if args.dry_run else needs_s
        start = time.perf_counter()
        if check.left() < needs:
            sec = {"status": "skipped", "reason": f"time budget: {check.left():.0f} s left, needs ~{needs} s"}
        else:
            print(f"[gpu_check] {name} ({check.left():.0f} s left)", flush=True)
            try:
                sec = {"status": "ok", **fn(check)}
            except Exception:  # noqa: BLE001 - one section's failure is a finding; the rest still run
                sec = {"status": "error", "error": traceback.format_exc(limit=8)}
                print(sec["error"], file=sys.stderr, flush=True)
        sec["seconds"] = time.perf_counter() - start
        report["sections"][name] = sec
        report["elapsed_s"] = time.monotonic() - check.start
        write_report(report, out)
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
    print((out / "gpu_check.md").read_text())
    return 0 if all(s["status"] == "ok" for s in report["sections"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
