"""``hm demo``: a small Gradio page around ``MotionCharacterPipeline``: reference upload, prompt, action phrase,
intensity slider, seed; an MP4 out.

    hm demo --checkpoint runs/mc [--host 127.0.0.1] [--port 7860] [--device auto]

Needs the ``demo`` extra (``pip install -e ".[demo]"``; scripts/setup.sh installs it). The page is served on
localhost by default; ``--host 0.0.0.0`` exposes it on the network (no authentication: keep it on a trusted one).
"""

from __future__ import annotations

import os
import pathlib
import sys
import tempfile
import threading

from human_motion.config import ConfigError

EXAMPLE_PROMPT = "a person in a sunlit park, natural light, high quality"


def add_arguments(parser) -> None:
    parser.add_argument("--checkpoint", required=True, help="run folder saved by `hm train` (or a checkpoint in it)")
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on (0.0.0.0: every interface)")
    parser.add_argument("--port", type=int, default=7860, help="port (0: the first free one from 7860)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda")
    parser.add_argument("--dtype", default="auto", choices=["auto", "fp32", "fp16", "bf16"])
    parser.add_argument("--cpu-offload", action="store_true", help="GPU: model CPU offload (less GPU memory)")
    parser.add_argument("--steps", type=int, default=30, help="default DDIM steps shown on the page")
    parser.add_argument("--guidance", type=float, default=8.0, help="default guidance scale shown on the page")
    parser.add_argument("--fps", type=float, default=4.0, help="frame rate of the returned video")
    parser.add_argument("--face-detector", default=None, choices=["mediapipe", "dlib", "insightface"])
    parser.add_argument("--insightface-root", default=None)


def _import_gradio():
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home
    try:
        import gradio as gr
    except ImportError:
        raise ConfigError("hm demo needs gradio: pip install -e '.[demo]' (or run bash scripts/setup.sh)") from None
    return gr


def make_generate_fn(pipe, out_dir: str | pathlib.Path, fps: float = 4.0):
    """The page's callback: (image, prompt, action, intensity, seed, steps, guidance) -> MP4 path. One generation
    at a time (the pipeline is not re-entrant); face problems come back as a message on the page."""
    import torch

    from human_motion.media import write_mp4
    from human_motion.model.sampling import ReferenceFaceError

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
                frames = pipe(reference_image=image, prompt=prompt or "", action=action.strip(),
                              intensity=float(intensity), num_inference_steps=int(steps),
                              guidance_scale=float(guidance), face_check=bool(face_check),
                              generator=torch.Generator().manual_seed(int(seed))).frames
            except ReferenceFaceError as e:
                raise gr.Error(str(e)) from None
            path = out_dir / f"video_{next(counter):05d}_i{float(intensity):g}_s{int(seed)}.mp4"
            write_mp4(str(path), frames, fps)
        return str(path)

    return generate


def build_demo(pipe, out_dir: str | pathlib.Path | None = None, steps: int = 30, guidance: float = 8.0,
               fps: float = 4.0):
    """The Gradio Blocks page for ``pipe`` (not launched)."""
    gr = _import_gradio()
    out_dir = out_dir or tempfile.mkdtemp(prefix="hm_demo_")
    generate = make_generate_fn(pipe, out_dir, fps)
    max_intensity = float(pipe.adapter.config.max_intensity)
    with gr.Blocks(title="MotionCharacter") as demo:
        gr.Markdown("## MotionCharacter\nA reference face, a prompt, an action and its intensity in; a video out. "
                    f"Trained size: {pipe.default_num_frames} frames at {pipe.default_size}x{pipe.default_size}.")
        with gr.Row():
            with gr.Column():
                reference = gr.Image(label="Reference face (one person)", type="numpy", sources=["upload"],
                                     elem_id="reference")
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
    """Start serving; returns (app, local url, share url) like ``Blocks.launch``."""
    kwargs = {"server_name": host, "prevent_thread_lock": not block, "show_error": True, "quiet": not block}
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
