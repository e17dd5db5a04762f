"""``hm generate``: a reference face, a prompt, an action and one or more intensities in; MP4 (and GIF) out.

    hm generate --checkpoint runs/mc --ref face.jpg --prompt "a woman in a park" --action smiling \\
        --intensity 12 --seed 0 --out out.mp4
    hm generate --checkpoint runs/mc --ref face.jpg --prompt ... --action smiling --intensity 0,5,10,20 --out sweep/

Several intensities (comma-separated) write one video per value, all from the same seed (the same initial noise, so
only the intensity differs), plus a side-by-side grid video labelled with the values: the paper's slider made
visible. One JSON line on stdout lists what was written (for scripts). See docs/generate.md.
"""

from __future__ import annotations

import json
import logging
import pathlib
import sys
import time

import numpy as np

from human_motion.config import ConfigError
from human_motion.devices import auto_device, torch_dtype
from human_motion.media import write_mp4

logger = logging.getLogger(__name__)


def add_arguments(parser) -> None:
    parser.add_argument("--checkpoint", required=True,
                        help="run folder saved by `hm train` (or its checkpoints/checkpoint-N, or adapter/)")
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
    parser.add_argument("--steps", type=int, default=30, help="DDIM steps (paper: 30)")
    parser.add_argument("--guidance", type=float, default=8.0, help="classifier-free guidance scale (paper: 8.0)")
    parser.add_argument("--negative-prompt", default=None, help="text of the unconditional branch (default: empty)")
    parser.add_argument("--fps", type=float, default=4.0, help="frame rate of the written video (the data's 4 fps)")
    parser.add_argument("--gif", action="store_true", help="also write an animated GIF next to each MP4")
    parser.add_argument("--grid", dest="grid", action="store_true", default=None,
                        help="write the side-by-side grid (default: on with several intensities)")
    parser.add_argument("--no-grid", dest="grid", action="store_false", help="no grid video")
    parser.add_argument("--device", default="auto", help="auto (cuda if available, else cpu), cpu, cuda, cuda:1")
    parser.add_argument("--dtype", default="auto", choices=["auto", "fp32", "fp16", "bf16"],
                        help="auto: fp16 on a GPU, fp32 on the CPU")
    parser.add_argument("--cpu-offload", action="store_true",
                        help="GPU: keep models on the CPU and move each to the GPU only while it runs")
    parser.add_argument("--no-vae-slicing", action="store_true", help="decode all frames in one VAE call")
    parser.add_argument("--no-face-check", action="store_true",
                        help="skip face detection: --ref is already an aligned face crop")
    parser.add_argument("--face-detector", default=None, choices=["mediapipe", "dlib", "insightface"],
                        help="the build's face detector to use (default: the build's default, mediapipe)")
    parser.add_argument("--insightface-root", default=None,
                        help="insightface model pack folder (checkpoints trained on ArcFace embeddings)")
    parser.add_argument("--face-set", action="append", default=[], metavar="KEY=VALUE",
                        help="an `hm build` setting for the reference face, e.g. faces.insightface_pack=antelopev2")
    parser.add_argument("--id-scale", type=float, default=None, help="lambda of Eq. 3 (default: the run's)")
    parser.add_argument("--action-scale", type=float, default=None, help="beta of Eq. 8 (default: the run's)")
    parser.add_argument("--intensity-scale", type=float, default=None, help="alpha of Eq. 8 (default: the run's)")
    parser.add_argument("--save-reference", action="store_true", help="also write the aligned reference face (png)")


def parse_intensities(text: str) -> list[float]:
    try:
        values = [float(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"--intensity must be a number or a comma-separated list of numbers, got {text!r}") from None
    if not values or any(not np.isfinite(v) or v < 0 for v in values):
        raise ConfigError(f"--intensity values must be finite numbers >= 0, got {text!r}")
    return values


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


def load_pipeline(checkpoint: str, device: str = "auto", dtype: str = "auto", cpu_offload: bool = False,
                  vae_slicing: bool = True, face_detector: str | None = None, insightface_root: str | None = None,
                  face_overrides: list[str] | tuple[str, ...] = ()):
    """The pipeline on ``device`` with the memory savers asked for (shared by ``hm generate`` and ``hm demo``)."""
    from human_motion.model.sampling import MotionCharacterPipeline

    device, torch_dtype = resolve_device(device, dtype)
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


def write_gif(path: pathlib.Path, frames: np.ndarray, fps: float) -> None:
    from PIL import Image

    images = [Image.fromarray(f) for f in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)


def run(args) -> int:
    import torch

    from human_motion.media import MediaError
    from human_motion.model.sampling import ReferenceFaceError, read_reference

    intensities = parse_intensities(args.intensity)
    ref_path = pathlib.Path(args.ref)
    if not ref_path.is_file():
        raise ConfigError(f"--ref {args.ref}: no such file")
    try:
        image = read_reference(ref_path)
    except MediaError as e:
        raise ConfigError(f"--ref {args.ref}: cannot read the image ({e})") from None
    videos_out, grid_out = output_paths(args.out, intensities)
    started = time.time()
    pipe = load_pipeline(args.checkpoint, args.device, args.dtype, args.cpu_offload, not args.no_vae_slicing,
                         args.face_detector, args.insightface_root, args.face_set)
    pipe.adapter.set_scales(args.id_scale, args.action_scale, args.intensity_scale)
    try:
        reference = pipe.prepare_reference(image, face_check=not args.no_face_check)
    except ReferenceFaceError as e:
        print(f"hm generate: error: {ref_path}: {e}", file=sys.stderr)
        return 2
    written: list[str] = []
    if args.save_reference:
        import cv2

        ref_out = videos_out[0].with_name(f"{videos_out[0].stem}_reference.png")
        cv2.imwrite(str(ref_out), cv2.cvtColor(reference.aligned, cv2.COLOR_RGB2BGR))
        written.append(str(ref_out))
    results = []
    for value, path in zip(intensities, videos_out):
        t = time.time()
        frames = pipe(reference_face=reference, prompt=args.prompt, action=args.action, intensity=value,
                      num_frames=args.num_frames, height=args.height, width=args.width,
                      num_inference_steps=args.steps, guidance_scale=args.guidance,
                      negative_prompt=args.negative_prompt,
                      generator=torch.Generator().manual_seed(args.seed)).frames  # (f, H, W, 3) uint8
        write_mp4(str(path), frames, args.fps)
        entry = {"intensity": value, "video": str(path), "seconds": round(time.time() - t, 3)}
        if args.gif:
            write_gif(path.with_suffix(".gif"), frames, args.fps)
            entry["gif"] = str(path.with_suffix(".gif"))
        results.append(entry)
        results[-1]["_frames"] = frames
        print(f"hm generate: intensity {value:g} -> {path} ({entry['seconds']:.1f} s)", file=sys.stderr)
    grid = args.grid if args.grid is not None else len(intensities) > 1
    summary = {"checkpoint": args.checkpoint, "ref": str(ref_path), "prompt": args.prompt, "action": args.action,
               "seed": args.seed, "device": str(pipe._execution_device), "dtype": str(pipe.dtype).replace("torch.", ""),
               "videos": [{k: v for k, v in r.items() if k != "_frames"} for r in results], "written": written}
    if grid:
        grid_frames = make_grid([r["_frames"] for r in results], [f"intensity {r['intensity']:g}" for r in results])
        write_mp4(str(grid_out), grid_frames, args.fps)
        summary["grid"] = str(grid_out)
        if args.gif:
            write_gif(grid_out.with_suffix(".gif"), grid_frames, args.fps)
            summary["grid_gif"] = str(grid_out.with_suffix(".gif"))
    summary["seconds"] = round(time.time() - started, 3)
    print(json.dumps(summary))
    return 0
