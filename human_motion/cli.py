"""``hm``: the command line. Each command lives in its own module, which exposes ``add_arguments(parser)`` and
``run(args) -> int``; this file only maps names to modules, parses, and turns configuration errors into one line.

    hm build --sources folder=videos/ --out shards/      curate clips into WebDataset shards
    hm stats shards/                                     look at what a build made
    hm verify shards/                                    check that shards, index and schema agree
    hm train shards/ --config train_tiny --out runs/x    train MotionCharacter
    hm generate --checkpoint runs/x --ref face.jpg ...   sample a video
    hm eval videos/ --refs refs/ --prompts prompts.jsonl score generated videos
    hm model-info --config train                         parameters and FLOPs per component
"""

from __future__ import annotations

import argparse
import importlib
import sys

from human_motion import __version__
from human_motion.config import ConfigError, DefaultsHelpFormatter
from human_motion.console import PATH_ADVICE

# name -> (module, one-line help). Modules are imported only when their command runs, so `hm stats` never pays
# for torch or Ray start-up.
COMMANDS: dict[str, tuple[str, str]] = {
    "build": ("human_motion.engine.command", "curate sources into WebDataset shards (Ray)"),
    "select": ("human_motion.dataset.subset", "tighter thresholds, a balanced subset or sampling weights of a build"),
    "stats": ("human_motion.dataset.stats", "summarise a build: counts, intensities, actions, rejections"),
    "verify": ("human_motion.dataset.verify", "check shards, index and sample schema; non-zero exit on problems"),
    "train": ("human_motion.model.train", "train MotionCharacter on shards (or synthetic data)"),
    "generate": ("human_motion.model.generate", "generate a video from a reference face, prompt, action and intensity"),
    "eval": ("human_motion.eval.command", "score generated videos with the paper's metrics and intensity fidelity"),
    "model-info": ("human_motion.model.info", "parameters and FLOPs per component for a model config"),
    "demo": ("human_motion.model.demo", "a small Gradio page: reference, prompt, action, intensity slider"),
}


def _load(name: str):
    module_name = COMMANDS[name][0]
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name and e.name.startswith("human_motion"):
            raise SystemExit(f"hm {name}: not available in this version ({module_name} is missing)") from None
        raise SystemExit(f"hm {name}: missing dependency {e.name!r}; run `bash scripts/setup.sh`") from None


DESCRIPTION = ("human-motion: curate face-video corpora into training shards, and train and sample MotionCharacter "
               "(identity-preserving, motion-controllable human video generation).")
EXAMPLES = """examples:
  hm build --out shards/                               the embedded demo corpus, offline (a first try)
  hm build --sources folder=videos/ --out shards/      any folder of videos and images
  hm build --sources celebv-hq,vfhq --config hm.toml --out shards/
  hm stats shards/ --plots plots/                      what a build made
  hm train shards/ --config train_tiny --out runs/x    train (a tiny model on the CPU)
  hm generate --checkpoint runs/x --ref face.jpg --prompt "a person" --action smiling --intensity 0,10,20 --out v/

hm COMMAND --help shows a command's options and their defaults. Docs: README.md and docs/ in the repository."""


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hm", description=DESCRIPTION, epilog=EXAMPLES,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"human-motion {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text, formatter_class=DefaultsHelpFormatter)
        if only == name:
            _load(name).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Only the chosen command's module is imported to build its arguments.
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command if command in COMMANDS else None)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(_load(args.command).run(args) or 0)
    except ConfigError as e:
        print(f"hm {args.command}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a path the system refused (an output folder that cannot be made, a full disk, ...)
        if e.filename is None or e.errno not in PATH_ADVICE:
            raise
        print(f"hm {args.command}: cannot use {e.filename}: {e.strerror}; {PATH_ADVICE[e.errno]}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"hm {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
