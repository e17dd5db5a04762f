"""``hm demo``: a small Gradio page around ``MotionCharacterPipeline``: reference upload, prompt, action phrase,
intensity slider, seed; an MP4 out.

    hm demo --checkpoint runs/mc [--host 127.0.0.1] [--port 7860] [--device auto]

Needs the ``demo`` extra (``pip install -e ".[demo]"``; scripts/setup.sh installs it). The page is served on
localhost by default; ``--host 0.0.0.0`` exposes it on the network (no authentication: keep it on a trusted one).
Errors reach the page as short messages that name no server path (the server's log has the details).
"""

from __future__ import annotations

import logging
import os
import pathlib
import sys
import tempfile
import threading

from human_motion.config import ConfigError
from human_motion.config import DefaultsHelpFormatter

EXAMPLE_PROMPT = "a person in a sunlit park, natural light, high quality"
UNREADABLE_UPLOAD = "The uploaded file is not an image that can be read; upload a JPEG, PNG or WebP photo."
FAILED = "Generation failed on the server; its log has the details."

logger = logging.getLogger(__name__)


def add_arguments(parser) -> None:
    parser.formatter_class = DefaultsHelpFormatter
    parser.add_argument("--checkpoint", required=True,
                        help="run folder saved by `hm train` (or a checkpoint in it), or a folder of save_pretrained")
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on (0.0.0.0: every interface)")
    parser.add_argument("--port", type=int, default=7860, help="port (0: the first free one from 7860)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda")
    parser.add_argument("--dtype", default="auto", choices=["auto", "fp32", "fp16", "bf16"],
                        help="auto: fp16 on a GPU, fp32 on the CPU")
    parser.add_argument("--cpu-offload", action="store_true",
                        help="GPU: model CPU offload, less GPU memory (default: off)")
    parser.add_argument("--steps", type=int, default=None,
                        help="DDIM steps shown on the page (default: the run's, else the paper's 30)")
    parser.add_argument("--guidance", type=float, default=None,
                        help="guidance scale shown on the page (default: the run's, else the paper's 8.0)")
    parser.add_argument("--fps", type=float, default=4.0, help="frame rate of the returned video")
    parser.add_argument("--face-detector", default=None, choices=["mediapipe", "dlib", "insightface"],
                        help="the build's face detector (default: the checkpoint's, else mediapipe)")
    parser.add_argument("--insightface-root", default=None,
                        help="insightface model pack folder (default: the checkpoint's, else insightface's own)")


def _import_gradio():
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home
    try:
        import gradio as gr
    except ImportError:
        raise ConfigError("hm demo needs gradio: pip install -e '.[demo]' (or run bash scripts/setup.sh)") from None
    return gr


def reference_image(gr, **kwargs):
    """A ``gr.Image`` whose unreadable uploads become a message without the server's temporary path (gradio's own
    error names the file it saved, e.g. "cannot identify image file '/tmp/gradio/...'"). The one instance's
    ``preprocess`` is wrapped rather than subclassed: gradio writes a ``.pyi`` stub next to the module of every
    component subclass, which would land in the installed package."""
    image = gr.Image(**kwargs)
    preprocess = image.preprocess

    def checked(payload):
        try:
            return preprocess(payload)
        except (OSError, ValueError, SyntaxError) as e:  # PIL: UnidentifiedImageError, truncated, bad header
            logger.warning("unreadable upload: %s", e)
            raise gr.Error(UNREADABLE_UPLOAD) from None

    image.preprocess = checked
    return image


def make_generate_fn(pipe, out_dir: str | pathlib.Path, fps: float = 4.0):
    """The page's callback: (image, prompt, action, intensity, seed, steps, guidance) -> MP4 path. One generation
    at a time (the pipeline is not re-entrant); problems come back as a message on the page, never a server path."""
    import torch

    from human_motion.media import write_mp4
    from human_motion.model.sampling import ReferenceFaceError, frames_to_uint8

    gr = _import_gradio()
    lock = threading.Lock()
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    counter = iter(range(1 << 62))

    def generate(image, prompt, action, intensity, seed, steps, guidance, face_check=True):
        if image is None:
            raise gr.Error("Upload a reference photo with one face first.")
        if not (action or "").strip():
            raise gr.Error("Type an action phrase, e.g. 'smiling'.")
        with lock:
            try:
                out = pipe(reference_image=image, prompt=prompt or "", action=action.strip(), intensity=intensity,
                           num_inference_steps=int(steps), guidance_scale=float(guidance),
                           face_check=bool(face_check), generator=torch.Generator().manual_seed(int(seed)),
                           output_type="np")
                path = out_dir / f"video_{next(counter):05d}_i{float(intensity):g}_s{int(seed)}.mp4"
                write_mp4(str(path), frames_to_uint8(out.frames[0]), fps)
            except ConfigError:  # the server's setup (a face model pack, ...): its message may name server paths
                logger.exception("generation failed")
                raise gr.Error(FAILED) from None
            except (ReferenceFaceError, ValueError) as e:  # the input's fault; these messages name no path
                raise gr.Error(str(e)) from None
            except Exception:  # the page's boundary: the details (paths included) stay in the server's log
                logger.exception("generation failed")
                raise gr.Error(FAILED) from None
        return str(path)

    return generate


def build_demo(pipe, out_dir: str | pathlib.Path | None = None, steps: int | None = None,
               guidance: float | None = None, fps: float = 4.0):
    """The Gradio Blocks page for ``pipe`` (not launched); ``steps``/``guidance`` default to the checkpoint's."""
    gr = _import_gradio()
    out_dir = out_dir or tempfile.mkdtemp(prefix="hm_demo_")
    generate = make_generate_fn(pipe, out_dir, fps)
    steps = steps or pipe.config.num_inference_steps
    guidance = pipe.config.guidance_scale if guidance is None else guidance
    max_intensity = float(pipe.adapter.config.max_intensity)
    with gr.Blocks(title="MotionCharacter") as demo:
        gr.Markdown("## MotionCharacter\nA reference face, a prompt, an action and its intensity in; a video out. "
                    f"Trained size: {pipe.default_num_frames} frames at {pipe.default_size}x{pipe.default_size}.")
        with gr.Row():
            with gr.Column():
                reference = reference_image(gr, label="Reference face (one person)", type="numpy",
                                            sources=["upload"], elem_id="reference")
                prompt = gr.Textbox(label="Prompt", value=EXAMPLE_PROMPT, elem_id="prompt")
                action = gr.Textbox(label="Action phrase", value="smiling", elem_id="action")
                intensity = gr.Slider(0.0, max_intensity, value=min(5.0, max_intensity), step=0.5,
                                      label="Motion intensity", elem_id="intensity")
                seed = gr.Number(label="Seed", value=0, precision=0, elem_id="seed")
                with gr.Accordion("Sampling", open=False):
                    steps_box = gr.Slider(1, 100, value=steps, step=1, label="DDIM steps", elem_id="steps")
                    guidance_box = gr.Slider(1.0, 15.0, value=guidance, step=0.5, label="Guidance scale",
                                             elem_id="guidance")
                    face_check = gr.Checkbox(value=True, label="Find and align the face (off: the image is an "
                                             "aligned face crop)", elem_id="face_check")
                button = gr.Button("Generate", variant="primary", elem_id="generate")
            with gr.Column():
                video = gr.Video(label="Generated video", elem_id="video", autoplay=True, loop=True)
        button.click(generate, [reference, prompt, action, intensity, seed, steps_box, guidance_box, face_check],
                     video, concurrency_limit=1)
    return demo


def launch(demo, host: str = "127.0.0.1", port: int = 7860, block: bool = True):
    """Start serving; returns (app, local url, share url) like ``Blocks.launch``. ``show_error`` stays off: only the
    messages written for the page (``gr.Error``) reach it, never an exception's text with its server paths."""
    kwargs = {"server_name": host, "prevent_thread_lock": not block, "show_error": False, "quiet": not block}
    if port:
        kwargs["server_port"] = port
    return demo.launch(**kwargs)


def run(args) -> int:
    from human_motion.model.generate import load_pipeline

    _import_gradio()
    pipe = load_pipeline(args.checkpoint, args.device, args.dtype, args.cpu_offload, True, args.face_detector,
                         args.insightface_root)
    demo = build_demo(pipe, steps=args.steps, guidance=args.guidance, fps=args.fps)
    print(f"hm demo: serving {args.checkpoint} on http://{args.host}:{args.port or 7860}", file=sys.stderr)
    launch(demo, args.host, args.port, block=True)
    return 0
