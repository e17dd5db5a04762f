"""``hm eval``: score generated videos with the paper's Table 1 metrics and intensity fidelity.

    hm eval videos/ --refs refs/ --prompts prompts.jsonl --out results/
    hm eval --protocol --checkpoint runs/x --refs unsplash50/ --prompts prompts.txt --actions smiling,nodding \
            --intensities 0,5,10,20 --seeds 0 --out results/

Writes ``results.json`` (set-level values, intensity fidelity, backends, what was not reported and why),
``per_video.jsonl``, ``table.md`` (laid out like Table 1, the paper's values alongside, with a status column: a
metric skipped because its model is not on this machine says what enables it; a value on unreliable inputs is
flagged) and ``intensity_fidelity.png``. It finishes offline: nothing is downloaded with ``HF_HUB_OFFLINE=1``.
The scoring is ``evaluate.py``, the models ``scorers.py``; docs/eval.md defines each metric.
"""

from __future__ import annotations

import json
import pathlib

from human_motion.config import ConfigError, load_config, resolve_config_path
from human_motion.devices import auto_device
from human_motion.eval.config import EvalConfig
from human_motion.eval.evaluate import evaluate
from human_motion.eval.inputs import read_eval_set
from human_motion.eval.weights import first_line
from human_motion.model.config import DefaultsHelpFormatter, packaged_configs


def add_arguments(parser) -> None:
    parser.formatter_class = DefaultsHelpFormatter
    parser.add_argument("videos", nargs="?", help="folder of generated videos (not with --protocol)")
    parser.add_argument("--refs", help="folder of reference images (the rows' \"ref\" are relative to it)")
    parser.add_argument("--prompts", required=True,
                        help="prompts.jsonl (video, ref, prompt, action, intensity); with --protocol a prompts.txt")
    parser.add_argument("--out", default="results", help="output folder")
    parser.add_argument("--config", default="eval",
                        help=f"config file or packaged name ({', '.join(packaged_configs('eval'))})")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. metrics=[face_similarity,intensity_fidelity]")
    g = parser.add_argument_group("--protocol: generate the set from a checkpoint, then score it")
    g.add_argument("--protocol", action="store_true", help="generate the evaluation set first (docs/eval.md)")
    g.add_argument("--checkpoint", help="a folder saved by `hm train`")
    g.add_argument("--actions", default="", help="comma-separated action phrases")
    g.add_argument("--intensities", default="0,5,10,20", help="comma-separated asked intensities")
    g.add_argument("--seeds", default="0", help="comma-separated seeds")


def _numbers(text: str, kind, flag: str) -> list:
    try:
        values = [kind(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"{flag} must be comma-separated numbers, got {text!r}") from None
    if not values:
        raise ConfigError(f"{flag} is empty")
    return values


def load_pipeline(checkpoint: str, device: str):
    """The pipeline of ``--checkpoint``; weights that cannot be loaded (truncated, pickled, of another model) are
    refused in one line that names the folder."""
    import pickle

    from safetensors import SafetensorError

    from human_motion.eval import protocol

    try:
        return protocol.load_pipeline(checkpoint, device)
    except (OSError, ValueError, RuntimeError, KeyError, pickle.UnpicklingError, SafetensorError) as e:
        raise ConfigError(f"--checkpoint {checkpoint}: cannot be loaded ({first_line(e)}); give a run folder of "
                          "`hm train` or a folder saved by MotionCharacterPipeline.save_pretrained") from None


def run(args) -> int:
    cfg = load_config(EvalConfig, resolve_config_path(args.config), args.set)
    out = pathlib.Path(args.out)
    if args.protocol:
        from human_motion.eval import protocol

        if not args.checkpoint or not args.refs:
            raise ConfigError("--protocol needs --checkpoint and --refs")
        if args.videos:
            raise ConfigError("--protocol writes its videos to OUT/videos; do not give a videos folder")
        jobs = protocol.plan_jobs(
            protocol.list_refs(args.refs), protocol.read_prompts_txt(args.prompts),
            [a.strip() for a in args.actions.split(",") if a.strip()],
            _numbers(args.intensities, float, "--intensities"), _numbers(args.seeds, int, "--seeds"),
            cfg.protocol.pairing)
        pipe = load_pipeline(args.checkpoint, auto_device(cfg.protocol.device))
        prompts_jsonl = protocol.generate_set(pipe, jobs, args.refs, out, cfg.protocol)
        videos_dir = out / "videos"
    else:
        if not args.videos:
            raise ConfigError("give the folder of videos to score (or --protocol to generate them)")
        prompts_jsonl, videos_dir = pathlib.Path(args.prompts), pathlib.Path(args.videos)
    items, unlisted = read_eval_set(prompts_jsonl, videos_dir, args.refs)
    summary = evaluate(cfg, items, out, unlisted=unlisted)
    print(json.dumps({k: summary[k] for k in ("videos_scored", "aggregate", "intensity_fidelity")}, indent=1))
    print(f"wrote {out / 'table.md'}")
    return 0
