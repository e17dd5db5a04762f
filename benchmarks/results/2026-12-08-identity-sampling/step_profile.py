"""Where a training step of the identity benchmark's runs goes, and whether ``torch.compile`` shortens it: the full
model's config (one thread, as the five runs train), four real batches from the shards; eager steps, then steps
alternating between the UNet as it is and compiled (inductor), the same parameters, in the same process. Parts by
``torch.profiler`` over 6 eager steps.

    .venv/bin/python benchmarks/results/2026-12-08-identity-sampling/step_profile.py WORK [STEPS]

WORK: a finished ``identity_control.py`` work folder (WORK/full/config.json, WORK/shards). Nothing is written to
WORK (the run folder the loaders want is a temporary one).
"""

import pathlib
import statistics
import sys
import tempfile
import time

import torch
from torch.profiler import profile, record_function

from human_motion.config import load_config
from human_motion.model import train as T
from human_motion.model.config import TrainConfig
from human_motion.model.data import get_dataset


def main() -> None:
    work, n = pathlib.Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 12
    torch.set_num_threads(1)
    cfg = load_config(TrainConfig, work / "full" / "config.json")
    dataset = get_dataset(cfg.data, cfg.model, str(work / "shards"), 0, rank=0, world_size=1, num_threads=1)
    batches = []
    for batch, _ in dataset.batches(cfg.train.train_batch_size):
        batches.append(batch)
        if len(batches) == 4:
            break
    c, face_embedder, model, params = T.build_model(cfg, pathlib.Path(tempfile.mkdtemp()), torch.device("cpu"),
                                                    torch.float32)
    optimizer, _ = T.make_optimizer(cfg, params, 1)
    model.train()

    def step(i: int) -> float:
        t0 = time.perf_counter()
        gen = torch.Generator("cpu").manual_seed(i)
        loss, _, _ = T.compute_loss(c, model, face_embedder, batches[i % 4], gen, cfg, torch.float32)
        with record_function("backward"):
            loss.backward()
        with record_function("clip + AdamW"):
            torch.nn.utils.clip_grad_norm_(params, cfg.optim.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        return time.perf_counter() - t0

    for name in ("encode_video", "encode_conditions", "id_loss"):  # the parts of compute_loss, by the names it calls
        inner = getattr(T, name)
        setattr(T, name, lambda *a, _f=inner, _n=name, **k: record_part(_n, _f, *a, **k))
    forward = model.forward
    model.forward = lambda *a, **k: record_part("UNet forward", forward, *a, **k)

    eager = [step(i) for i in range(n)][3:]
    with profile() as prof:
        for i in range(6):
            step(i)
    parts = {e.key: e.cpu_time_total / 6e6 for e in prof.key_averages()
             if e.key in ("encode_video", "encode_conditions", "id_loss", "UNet forward", "backward", "clip + AdamW")}
    eager_unet, compiled_unet = model.unet, torch.compile(model.unet)  # the same parameters, two ways to run them
    model.unet = compiled_unet
    t0 = time.perf_counter()
    first = step(0)
    step(1)
    warm = time.perf_counter() - t0
    times = {"eager": [], "compiled": []}
    for i in range(2, 2 + 2 * n):  # alternated, so that the machine's drift falls on both alike
        name = "eager" if i % 2 else "compiled"
        model.unet = eager_unet if name == "eager" else compiled_unet
        times[name].append(step(i))
    median = {k: statistics.median(v) for k, v in times.items()}
    print(f"eager: {median['eager']:.3f} s a step (median of {n}, alternated with the compiled UNet); parts, "
          "s a step (6 eager steps before): "
          + ", ".join(f"{k} {v:.3f} ({v / statistics.median(eager):.0%})"
                      for k, v in sorted(parts.items(), key=lambda kv: -kv[1])))
    print(f"compiled UNet: first step {first:.0f} s (compiling; {warm:.0f} s for two), then {median['compiled']:.3f} "
          f"s a step: x{median['compiled'] / median['eager']:.2f} of eager")

def record_part(name, fn, *args, **kwargs):
    with record_function(name):
        return fn(*args, **kwargs)


if __name__ == "__main__":
    main()
