"""``hm generate``: a reference face, a prompt, an action and one or more intensities in; MP4 (GIF, PNG) out.

    hm generate --checkpoint runs/mc --ref face.jpg --prompt "a woman in a park" --action smiling \\
        --intensity 12 --seed 0 --out out.mp4
    hm generate --checkpoint runs/mc --ref face.jpg --prompt ... --action smiling --intensity 0,5,10,20 --out sweep/

Several intensities (comma-separated) give one video per value (``--batch-size`` per pipeline call), all from the
same seed (the same initial noise, so only the intensity differs), plus a side-by-side grid video and a contact sheet
(PNG, one row per intensity) labelled with the values: the paper's slider made visible. ``--checkpoint`` is a run
folder of ``hm train`` or a folder of ``save_pretrained``. One JSON line on stdout lists what was written (for
scripts). See docs/generate.md.
"""

from __future__ import annotations

import contextlib
import json
import pathlib
import sys
import time

import numpy as np

from human_motion.config import ConfigError, DefaultsHelpFormatter
from human_motion.console import filtered_stderr
from human_motion.devices import auto_device, torch_dtype
from human_motion.media import write_mp4

MAX_SHEET_TILE_PX = 256  # contact-sheet frames are shrunk to this side at most (16 x 512 px frames: 8192 px wide)


def add_arguments(parser) -> None:
    parser.formatter_class = DefaultsHelpFormatter
    parser.add_argument("--checkpoint", required=True, help="run folder saved by `hm train` (or its "
                        "checkpoints/checkpoint-N, or adapter/), or a folder written by save_pretrained")
    parser.add_argument("--ref", required=True, help="reference photo with one face (jpg/png)")
    parser.add_argument("--prompt", required=True, help="scene and appearance text")
    parser.add_argument("--action", required=True, help='action phrase, e.g. "smiling", "turning head left"')
    parser.add_argument("--intensity", default="5", help="motion intensity, or a comma-separated list (0,5,10,20)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (the same seed gives the same video)")
    parser.add_argument("--out", required=True,
                        help="output .mp4 (several intensities: NAME_i<value>.mp4 beside it), or a folder")
    parser.add_argument("--num-frames", type=int, default=None, help="frames (default: the run's, paper 16)")
    parser.add_argument("--height", type=int, default=None, help="pixels (default: the run's, paper 512)")
    parser.add_argument("--width", type=int, default=None, help="pixels (default: the run's, paper 512)")
    parser.add_argument("--steps", type=int, default=None,
                        help="DDIM steps (default: the run's sampling.num_inference_steps, else the paper's 30)")
    parser.add_argument("--guidance", type=float, default=None,
                        help="classifier-free guidance scale (default: the run's sampling.guidance_scale, else the "
                             "paper's 8.0)")
    parser.add_argument("--negative-prompt", default=None, help="text of the unconditional branch (default: empty)")
    parser.add_argument("--batch-size", type=int, default=1,
                        help="videos per pipeline call (0: every intensity in one batch, faster on a GPU with memory "
                             "to spare; 1 gives each video exactly as a run with that intensity alone)")
    parser.add_argument("--fps", type=float, default=4.0, help="frame rate of the written video (the data's 4 fps)")
    parser.add_argument("--gif", action="store_true", help="also write an animated GIF next to each MP4 (default: off)")
    parser.add_argument("--grid", dest="grid", action="store_true", default=None,
                        help="write the side-by-side grid MP4 and the contact sheet PNG (default: on with several "
                             "intensities)")
    parser.add_argument("--no-grid", dest="grid", action="store_false", help="no grid video or contact sheet")
    parser.add_argument("--device", default="auto", help="auto (cuda if available, else cpu), cpu, cuda, cuda:1")
    parser.add_argument("--dtype", default="auto", choices=["auto", "fp32", "fp16", "bf16"],
                        help="auto: fp16 on a GPU, fp32 on the CPU")
    parser.add_argument("--cpu-offload", action="store_true",
                        help="GPU: keep models on the CPU and move each to the GPU only while it runs (default: off)")
    parser.add_argument("--no-vae-slicing", action="store_true",
                        help="decode all frames in one VAE call (default: one frame at a time)")
    parser.add_argument("--no-face-check", action="store_true",
                        help="skip face detection: --ref is already an aligned face crop (default: detect)")
    parser.add_argument("--face-detector", default=None, choices=["mediapipe", "dlib", "insightface"],
                        help="the build's face detector to use (default: the checkpoint's, else mediapipe)")
    parser.add_argument("--insightface-root", default=None,
                        help="insightface model pack folder (checkpoints trained on ArcFace embeddings; default: "
                             "the checkpoint's, else insightface's own)")
    parser.add_argument("--face-set", action="append", default=[], metavar="KEY=VALUE",
                        help="an `hm build` setting for the reference face, e.g. faces.insightface_pack=antelopev2 "
                             "(default: the checkpoint's)")
    parser.add_argument("--id-scale", type=float, default=None, help="lambda of Eq. 3 (default: the run's)")
    parser.add_argument("--action-scale", type=float, default=None, help="beta of Eq. 8 (default: the run's)")
    parser.add_argument("--intensity-scale", type=float, default=None, help="alpha of Eq. 8 (default: the run's)")
    parser.add_argument("--save-reference", action="store_true",
                        help="also write the aligned reference face (png; default: off)")


def parse_intensities(text: str) -> list[float]:
    try:
        values = [float(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"--intensity must be a number or a comma-separated list of numbers, got {text!r}") from None
    if not values or any(not np.isfinite(v) or v < 0 for v in values):
        raise ConfigError(f"--intensity values must be finite numbers >= 0, got {text!r}")
    return values


def check_numbers(args) -> None:
    """One-line refusals of sizes, steps and rates that cannot make a video (0 would otherwise mean "the run's")."""
    for flag, value in (("--num-frames", args.num_frames), ("--height", args.height), ("--width", args.width),
                        ("--steps", args.steps)):
        if value is not None and value < 1:
            raise ConfigError(f"{flag} must be >= 1, got {value} (leave it out for the run's own)")
    for flag, value in (("--height", args.height), ("--width", args.width)):
        if value is not None and value % 8:
            raise ConfigError(f"{flag} must be a multiple of 8 (the VAE's scale), got {value}")
    if args.guidance is not None and not np.isfinite(args.guidance):
        raise ConfigError(f"--guidance must be a finite number, got {args.guidance}")
    if not (np.isfinite(args.fps) and args.fps > 0):
        raise ConfigError(f"--fps must be a number > 0, got {args.fps}")
    if args.batch_size < 0:
        raise ConfigError(f"--batch-size must be >= 0 (0: all intensities in one call), got {args.batch_size}")


def resolve_device(device: str, dtype: str):
    """(device, torch dtype): cuda when asked or available, falling back to the CPU with a warning."""
    import torch

    device = auto_device(device)
    if device.startswith("cuda") and not torch.cuda.is_available():
        print("hm generate: CUDA is not available, running on the CPU (fp32)", file=sys.stderr)
        device = "cpu"
    if dtype == "auto":
        dtype = "fp16" if device.startswith("cuda") else "fp32"
    if device == "cpu" and dtype == "fp16":
        print("hm generate: fp16 is slow or unsupported on the CPU; using fp32", file=sys.stderr)
        dtype = "fp32"
    return device, torch_dtype(dtype)


@contextlib.contextmanager
def quiet_loading():
    """No "Loading pipeline components" / "Loading weights" bars from diffusers and transformers while a checkpoint
    loads: a command's output is its own progress and, when loading fails, its one-line refusal."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    bars = [(m, m.is_progress_bar_enabled()) for m in (diffusers_logging, transformers_logging)]
    for module, _ in bars:
        module.disable_progress_bar()
    try:
        yield
    finally:
        for module, enabled in bars:
            if enabled:
                module.enable_progress_bar()


def load_pipeline(checkpoint: str, device: str = "auto", dtype: str = "auto", cpu_offload: bool = False,
                  vae_slicing: bool = True, face_detector: str | None = None, insightface_root: str | None = None,
                  face_overrides: list[str] | tuple[str, ...] = ()):
    """The pipeline on ``device`` with the memory savers asked for (shared by ``hm generate`` and ``hm demo``).
    ``checkpoint``: a run folder of ``hm train`` or a folder of ``save_pretrained``; a missing or damaged one is a
    ``ConfigError`` (one line)."""
    from human_motion.model.sampling import MotionCharacterPipeline

    device, torch_dtype = resolve_device(device, dtype)
    with quiet_loading():
        pipe = MotionCharacterPipeline.from_pretrained(checkpoint, face_detector=face_detector,
                                                       insightface_root=insightface_root, face_overrides=face_overrides)
    if cpu_offload and device.startswith("cuda"):
        pipe.to(dtype=torch_dtype)
        pipe.enable_model_cpu_offload(device=device)
    else:
        if cpu_offload:
            print("hm generate: --cpu-offload needs a GPU; ignored on the CPU", file=sys.stderr)
        if torch_dtype == pipe.dtype:
            pipe.to(device)
        else:
            pipe.to(device, torch_dtype)
    if vae_slicing:
        pipe.enable_vae_slicing()
    return pipe


def output_paths(out: str, intensities: list[float]) -> tuple[list[pathlib.Path], pathlib.Path]:
    """Video paths (one per intensity) and the grid path. ``out.mp4``: the video itself for one intensity, else
    ``out_i<v>.mp4`` and ``out_grid.mp4`` beside it; a folder: ``intensity_<v>.mp4`` and ``grid.mp4`` in it."""
    path = pathlib.Path(out)
    if path.suffix.lower() == ".mp4":
        path.parent.mkdir(parents=True, exist_ok=True)
        if len(intensities) == 1:
            return [path], path.with_name(f"{path.stem}_grid.mp4")
        return [path.with_name(f"{path.stem}_i{v:g}.mp4") for v in intensities], path.with_name(f"{path.stem}_grid.mp4")
    if path.suffix:
        raise ConfigError(f"--out must be an .mp4 file or a folder, got {out}")
    path.mkdir(parents=True, exist_ok=True)
    return [path / f"intensity_{v:g}.mp4" for v in intensities], path / "grid.mp4"


def label(frame: np.ndarray, text: str) -> np.ndarray:
    """``text`` in a dark band at the top of a copy of ``frame`` (H, W, 3)."""
    import cv2

    out = frame.copy()
    w = out.shape[1]
    scale = max(0.3, w / 320)
    band = max(10, int(22 * scale))
    out[:band] = (out[:band] * 0.35).astype(np.uint8)
    cv2.putText(out, text, (4, band - max(3, int(6 * scale))), cv2.FONT_HERSHEY_SIMPLEX, scale * 0.5,
                (255, 255, 255), 1, cv2.LINE_AA)
    return out


def make_grid(videos: list[np.ndarray], labels: list[str], columns: int | None = None) -> np.ndarray:
    """Videos (f, H, W, 3) side by side (rows of ``columns``, default up to 4), each labelled; (f, H*r, W*c, 3)."""
    n = len(videos)
    columns = columns or min(n, 4)
    rows = -(-n // columns)
    f, h, w = videos[0].shape[:3]
    grid = np.zeros((f, rows * h, columns * w, 3), np.uint8)
    for i, (video, text) in enumerate(zip(videos, labels)):
        r, c = divmod(i, columns)
        grid[:, r * h:(r + 1) * h, c * w:(c + 1) * w] = [label(frame, text) for frame in video]
    return grid


def make_contact_sheet(videos: list[np.ndarray], labels: list[str], max_tile: int = MAX_SHEET_TILE_PX) -> np.ndarray:
    """One row per video, its frames left to right (shrunk to ``max_tile`` px at most), the first frame of each row
    labelled: (n*h, f*w, 3), a still image of the whole sweep."""
    import cv2

    f, h, w = videos[0].shape[:3]
    k = min(1.0, max_tile / max(h, w))
    th, tw = max(1, round(h * k)), max(1, round(w * k))
    rows = []
    for video, text in zip(videos, labels):
        tiles = [cv2.resize(frame, (tw, th), interpolation=cv2.INTER_AREA) if k < 1 else frame for frame in video]
        tiles[0] = label(tiles[0], text)
        rows.append(np.concatenate(tiles, axis=1))
    return np.concatenate(rows, axis=0)


def write_gif(path: pathlib.Path, frames: np.ndarray, fps: float) -> None:
    from diffusers.utils import export_to_gif
    from PIL import Image

    export_to_gif([Image.fromarray(f) for f in frames], str(path), fps=fps)


def write_video(path: pathlib.Path, frames: np.ndarray, fps: float, gif: bool) -> dict:
    """The MP4 (and GIF) of one video (f, H, W, 3) uint8. MP4s go through ``media.write_mp4``, not diffusers'
    ``export_to_video``: that one needs imageio-ffmpeg (not installed here; without it diffusers falls back to
    OpenCV's MPEG-4 Part 2, which browsers do not play), truncates instead of rounding, and cannot turn x264's
    macroblock tree off, so the same seed would not give the same file byte for byte (docs/generate.md)."""
    write_mp4(str(path), frames, fps)
    written = {"video": str(path)}
    if gif:
        write_gif(path.with_suffix(".gif"), frames, fps)
        written["gif"] = str(path.with_suffix(".gif"))
    return written


def sample_videos(pipe, reference, args, intensities: list[float]) -> list[np.ndarray]:
    """One video (f, H, W, 3) uint8 per intensity, in batches of ``--batch-size`` (0: all in one call); every video
    starts from the same noise (one generator per video, each seeded with ``--seed``). Batch-mates agree with
    single calls only up to float rounding (about 1e-5 in the latents: kernels differ with the batch size), which
    is why 1 is the default: a video then does not depend on which other intensities were asked with it."""
    import torch

    from human_motion.model.sampling import frames_to_uint8

    size = args.batch_size if args.batch_size > 0 else len(intensities)
    videos = []
    for start in range(0, len(intensities), size):
        chunk = intensities[start:start + size]
        out = pipe(reference_face=reference, prompt=args.prompt, action=args.action, intensity=chunk,
                   num_frames=args.num_frames, height=args.height, width=args.width,
                   num_inference_steps=args.steps, guidance_scale=args.guidance, negative_prompt=args.negative_prompt,
                   generator=[torch.Generator().manual_seed(args.seed) for _ in chunk], output_type="np")
        videos += [frames_to_uint8(v) for v in out.frames]
    return videos


def read_reference_arg(ref: str) -> np.ndarray:
    from human_motion.media import MediaError
    from human_motion.model.sampling import read_reference

    path = pathlib.Path(ref)
    if not path.is_file():
        raise ConfigError(f"--ref {ref}: no such file; pass a photo with one face (jpg/png)")
    try:
        return read_reference(path)
    except MediaError as e:
        raise ConfigError(f"--ref {ref}: cannot read the image ({e}); pass a jpg/png/webp photo") from None


def run(args) -> int:
    with filtered_stderr():  # the face models' native start-up lines (mediapipe's absl) are not the user's
        return _run(args)


def _run(args) -> int:
    from PIL import Image

    from human_motion.model.sampling import ReferenceFaceError

    intensities = parse_intensities(args.intensity)
    check_numbers(args)
    image = read_reference_arg(args.ref)
    videos_out, grid_out = output_paths(args.out, intensities)
    started = time.time()
    pipe = load_pipeline(args.checkpoint, args.device, args.dtype, args.cpu_offload, not args.no_vae_slicing,
                         args.face_detector, args.insightface_root, args.face_set)
    pipe.adapter.set_scales(args.id_scale, args.action_scale, args.intensity_scale)
    try:  # what only the loaded model can say: e.g. more frames than its motion modules' positional encoding
        pipe.check_inputs(args.num_frames or pipe.default_num_frames, args.height or pipe.default_size,
                          args.width or pipe.default_size, args.steps or pipe.config.num_inference_steps, 1, "np")
    except ValueError as e:
        raise ConfigError(f"{e}; change --num-frames, --height or --width") from None
    try:
        reference = pipe.prepare_reference(image, face_check=not args.no_face_check)
    except ReferenceFaceError as e:
        raise ConfigError(f"{args.ref}: {e}") from None
    written: list[str] = []
    if args.save_reference:
        ref_out = videos_out[0].with_name(f"{videos_out[0].stem}_reference.png")
        Image.fromarray(reference.aligned).save(ref_out)
        written.append(str(ref_out))
    videos = sample_videos(pipe, reference, args, intensities)
    seconds = round(time.time() - started, 3)
    results = [{"intensity": v, **write_video(p, frames, args.fps, args.gif)}
               for v, p, frames in zip(intensities, videos_out, videos)]
    for r in results:
        print(f"hm generate: intensity {r['intensity']:g} -> {r['video']}", file=sys.stderr)
    summary = {"checkpoint": args.checkpoint, "ref": args.ref, "prompt": args.prompt, "action": args.action,
               "seed": args.seed, "steps": args.steps or pipe.config.num_inference_steps,
               "guidance": pipe.config.guidance_scale if args.guidance is None else args.guidance,
               "device": str(pipe._execution_device), "dtype": str(pipe.dtype).replace("torch.", ""),
               "videos": results, "written": written, "sampling_seconds": seconds}
    if args.grid if args.grid is not None else len(intensities) > 1:
        labels = [f"intensity {v:g}" for v in intensities]
        summary.update({f"grid_{k}" if k != "video" else "grid": v for k, v in
                        write_video(grid_out, make_grid(videos, labels), args.fps, args.gif).items()})
        sheet = grid_out.with_suffix(".png")
        Image.fromarray(make_contact_sheet(videos, labels)).save(sheet)
        summary["grid_png"] = str(sheet)
    summary["seconds"] = round(time.time() - started, 3)
    print(json.dumps(summary))
    return 0
