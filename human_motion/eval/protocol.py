"""``hm eval --protocol``: generate the evaluation set from a checkpoint, then score it.

The set is reference portraits x prompts x action phrases x asked intensities x seeds (docs/eval.md, "Unsplash-50"):

- ``cycle`` pairing (default): prompt i goes with reference ``i mod n_refs`` and action ``i mod n_actions`` (or the
  action written after a tab on its line), then every intensity and seed: ``n_prompts x n_intensities x n_seeds``
  videos, every portrait used, and every prompt seen at every intensity (what intensity fidelity needs);
- ``product``: every reference with every prompt and every action (``n_refs x n_prompts x n_actions x ...``).

Videos are written as ``videos/{ref}__p{prompt:03d}__a{action}__i{intensity}__s{seed}.mp4`` and ``prompts.jsonl``
maps each to its reference, prompt, action and asked intensity (the file ``hm eval`` reads). A video that exists
already is not generated again, so a stopped run continues where it stopped.
"""

from __future__ import annotations

import json
import pathlib
import re

from human_motion.config import ConfigError
from human_motion.eval.inputs import load_reference
from human_motion.media import IMAGE_EXTENSIONS, write_mp4


def load_pipeline(checkpoint: str, device: str):
    """The MotionCharacter sampling pipeline (issue 7) from a folder saved by ``hm train``."""
    try:
        from human_motion.model.sampling import MotionCharacterPipeline
    except ImportError as e:
        raise ConfigError(f"--protocol needs human_motion.model.sampling.MotionCharacterPipeline ({e})") from None
    pipe = MotionCharacterPipeline.from_pretrained(checkpoint)
    pipe.to(device)
    return pipe


def read_prompts_txt(path: str | pathlib.Path) -> list[tuple[str, str | None]]:
    """One prompt per line (blank lines and ``#`` comments skipped); ``prompt<TAB>action`` fixes the line's action."""
    p = pathlib.Path(path)
    if not p.is_file():
        raise ConfigError(f"--prompts {str(p)!r} does not exist")
    out = []
    for line in p.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        prompt, _, action = line.partition("\t")
        out.append((prompt.strip(), action.strip() or None))
    if not out:
        raise ConfigError(f"--prompts {str(p)!r} has no prompts")
    return out


def list_refs(refs_dir: str | pathlib.Path) -> list[pathlib.Path]:
    d = pathlib.Path(refs_dir)
    if not d.is_dir():
        raise ConfigError(f"--refs {str(d)!r} is not a folder")
    refs = sorted(p for p in d.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not refs:
        raise ConfigError(f"--refs {str(d)!r} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
    return refs


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)[:60] or "ref"


def plan_jobs(refs: list[pathlib.Path], prompts: list[tuple[str, str | None]], actions: list[str],
              intensities: list[float], seeds: list[int], pairing: str) -> list[dict]:
    """The rows of ``prompts.jsonl`` for the set, in generation order."""
    if not actions and any(a is None for _, a in prompts):
        raise ConfigError("give --actions, or write an action after a tab on every prompt line")
    combos = []  # (ref, prompt index, prompt, action index, action)
    for pi, (prompt, fixed) in enumerate(prompts):
        choices = [(None, fixed)] if fixed else list(enumerate(actions))
        if pairing == "cycle":
            ai, action = choices[pi % len(choices)] if not fixed else (None, fixed)
            combos.append((refs[pi % len(refs)], pi, prompt, ai, action))
        else:
            combos += [(ref, pi, prompt, ai, action) for ref in refs for ai, action in choices]
    jobs = []
    for ref, pi, prompt, ai, action in combos:
        for intensity in intensities:
            for seed in seeds:
                tag = "t" if ai is None else f"{ai}"
                name = f"{_safe(ref.stem)}__p{pi:03d}__a{tag}__i{intensity:g}__s{seed}.mp4"
                jobs.append({"video": name, "ref": ref.name, "prompt": prompt, "action": action,
                             "intensity": float(intensity), "seed": int(seed)})
    return jobs


def generate_set(pipe, jobs: list[dict], refs_dir: str | pathlib.Path, out: pathlib.Path, pcfg) -> pathlib.Path:
    """Generate every job's video into ``out/videos`` (skipping those present) and write ``out/prompts.jsonl``."""
    import torch

    from human_motion.model.pipeline_output import frames_to_uint8

    videos = out / "videos"
    videos.mkdir(parents=True, exist_ok=True)
    with open(out / "prompts.jsonl", "w", encoding="utf-8") as f:
        for job in jobs:
            f.write(json.dumps(job) + "\n")
    refs: dict[str, object] = {}
    for i, job in enumerate(jobs):
        path = videos / job["video"]
        if path.exists():
            continue
        if job["ref"] not in refs:
            refs[job["ref"]] = load_reference(pathlib.Path(refs_dir) / job["ref"])
        result = pipe(reference_image=refs[job["ref"]], prompt=job["prompt"], action=job["action"],
                      intensity=job["intensity"], num_frames=pcfg.num_frames, height=pcfg.height, width=pcfg.width,
                      num_inference_steps=pcfg.num_inference_steps, guidance_scale=pcfg.guidance_scale,
                      generator=torch.Generator().manual_seed(job["seed"]), output_type="np")
        write_mp4(str(path), frames_to_uint8(result.frames[0]), pcfg.fps)  # frames[0]: the call's one video
        print(f"[{i + 1}/{len(jobs)}] {job['video']}", flush=True)
    return out / "prompts.jsonl"
