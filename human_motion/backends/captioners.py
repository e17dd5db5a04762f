"""Large multimodal captioners behind the caption stage: one prompt, one JSON answer with both outputs.

Backends (``caption.backend``):

- ``transformers``: any vision-language model that ``AutoModelForImageTextToText`` / ``AutoProcessor`` load (Qwen2-VL,
  Qwen2.5-VL, LLaVA, ...), from a hub id or a local folder; the rows of a Ray batch go through one ``generate``.
- ``vllm``: the same models through vLLM's offline ``LLM.chat`` (imported only when chosen; install vLLM on the GPU
  nodes yourself), for throughput.
- ``endpoint``: any OpenAI-compatible ``/chat/completions`` server (vLLM's and SGLang's servers, hosted APIs);
  images are base64 JPEG data URLs; the API key is read from the environment variable that ``caption.api_key_env``
  names.

The model sees ``caption.num_frames`` frames spread over the window and answers ``{"action": ..., "description":
...}``. :func:`parse_answer` validates the answer: control characters stripped, the action a short lower-case phrase
led by an -ing verb ("smiling", "turning head to the left"), the description of bounded length. Invalid answers are
asked again (sampling at ``caption.retry_temperature``) up to ``caption.max_retries`` times; then the row is rejected
with the reason ``caption_invalid`` (``caption_request_failed`` when the model could not be reached) and the detail.
"""

from __future__ import annotations

import base64
import concurrent.futures
import dataclasses
import json
import logging
import os
import re
import time
import unicodedata
import urllib.error
import urllib.request
from typing import Any, Protocol

import cv2
import numpy as np

from human_motion.config import ConfigError
from human_motion.devices import auto_device, torch_dtype



class CaptionConfig(Protocol):
    """The settings a captioner reads. The caption stage's config section (stages/caption.py) has them; a backend
    knows no stage, so it names what it needs here instead of importing the stage."""

    backend: str
    model: str | None
    endpoint_url: str | None
    api_key_env: str | None
    num_frames: int
    image_px: int
    prompt: str | None
    max_new_tokens: int
    temperature: float
    retry_temperature: float
    max_retries: int
    retry_backoff_s: float
    max_action_words: int
    max_description_chars: int
    device: str
    dtype: str
    model_kwargs: dict[str, Any]
    trust_remote_code: bool
    json_mode: bool
    request_timeout_s: float
    max_parallel_requests: int

log = logging.getLogger("human_motion")

PROMPT = (
    "{what}\n"
    "Answer with one JSON object and nothing else, with exactly two keys:\n"
    '"action": what the person does, 1 to {words} lower-case words starting with a verb ending in -ing, for example '
    '"smiling", "talking", "nodding", "turning head to the left" (left and right are the person\'s own);\n'
    '"description": one or two sentences, at most {chars} characters, describing the person\'s appearance, '
    "expression and motion.\n"
    'Example: {{"action": "smiling", "description": "A young woman with long dark hair smiles at the camera."}}'
)
VIDEO = "These are {n} frames, in time order, from a {seconds:g}-second video of a person's face."
PHOTO = "This is a portrait photo of a person (a still image: name the expression, e.g. \"smiling\")."

# Words that end in -ing without being verbs; an action may not start with one.
NOT_VERBS = {"thing", "nothing", "something", "anything", "everything", "king", "ring", "wing", "string", "spring",
             "morning", "evening", "ceiling", "clothing", "earring", "sing"}
ACTION_RE = re.compile(r"^[a-z]{3,}ing(?: [a-z][a-z'-]*)*$")
MIN_DESCRIPTION_CHARS = 10


class InvalidAnswer(ValueError):
    """The model's text is not a valid answer; the message says why."""


@dataclasses.dataclass
class CaptionRequest:
    images: list[np.ndarray]  # RGB uint8, already at the size the model sees
    prompt: str


@dataclasses.dataclass
class CaptionAnswer:
    action: str
    description: str
    attempts: int
    raw: str


def clean_text(text: str) -> str:
    """Control and format characters (Unicode Cc/Cf: NUL, ESC, zero-width, bidi marks) become spaces; runs of
    whitespace collapse to one space."""
    text = "".join(" " if unicodedata.category(c) in ("Cc", "Cf") else c for c in text)
    return " ".join(text.split())


def _json_object(text: str) -> dict:
    """The first JSON object in a model's text (models wrap JSON in prose or ```json fences)."""
    decoder = json.JSONDecoder(strict=False)  # raw control characters inside strings: accepted, then stripped
    for start in [m.start() for m in re.finditer(r"\{", text)][:8]:
        try:
            obj, _ = decoder.raw_decode(text[start:])
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict):
            return obj
    raise InvalidAnswer("no JSON object in the answer")


def parse_answer(text: str, max_action_words: int = 6, max_description_chars: int = 400) -> tuple[str, str]:
    """(action, description) from a model's answer, cleaned; InvalidAnswer says what is wrong."""
    obj = {str(k).strip().lower(): v for k, v in _json_object(text).items()}
    action, description = obj.get("action"), obj.get("description")
    if not isinstance(action, str) or not isinstance(description, str):
        raise InvalidAnswer(f"the JSON needs string values for 'action' and 'description' (keys: {sorted(obj)[:6]})")
    action = clean_text(action).lower().strip(" .!;:,\"'")
    description = clean_text(description)
    words = action.split()
    if not (ACTION_RE.match(action) and words[0] not in NOT_VERBS and len(words) <= max_action_words):
        raise InvalidAnswer(f"action {action[:80]!r} is not 1-{max_action_words} lower-case words led by an -ing "
                            "verb (e.g. 'smiling', 'turning head to the left')")
    if not MIN_DESCRIPTION_CHARS <= len(description) <= max_description_chars:
        raise InvalidAnswer(f"description has {len(description)} characters (allowed "
                            f"{MIN_DESCRIPTION_CHARS}-{max_description_chars})")
    return action, description


def make_request(frames: np.ndarray, static: bool, fps: float, cfg: CaptionConfig) -> CaptionRequest:
    """``cfg.num_frames`` frames spread over the window (one for a still image), resized to ``cfg.image_px``."""
    n = 1 if static else min(cfg.num_frames, len(frames))
    idx = np.linspace(0, len(frames) - 1, n).round().astype(int)
    images = [cv2.resize(frames[i], (cfg.image_px, cfg.image_px), interpolation=cv2.INTER_AREA) for i in idx]
    what = PHOTO if static else VIDEO.format(n=n, seconds=round(len(frames) / fps, 1))
    prompt = (cfg.prompt or PROMPT).format(what=what, words=cfg.max_action_words, chars=cfg.max_description_chars)
    return CaptionRequest(images, prompt)


def jpeg_data_url(rgb: np.ndarray, quality: int = 90) -> str:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return "data:image/jpeg;base64," + base64.b64encode(buf.tobytes()).decode("ascii")


def openai_messages(req: CaptionRequest) -> list[dict]:
    """OpenAI chat format (the endpoint and vLLM's ``LLM.chat``): the images as data URLs, then the prompt."""
    content = [{"type": "image_url", "image_url": {"url": jpeg_data_url(im)}} for im in req.images]
    return [{"role": "user", "content": content + [{"type": "text", "text": req.prompt}]}]


class TransformersBackend:
    """A transformers vision-language model; all requests of a batch in one left-padded ``generate``."""

    def __init__(self, cfg: CaptionConfig):
        try:
            import torch
            from transformers import AutoModelForImageTextToText, AutoProcessor
        except ImportError as e:
            raise ImportError("caption.backend=transformers needs transformers and torch "
                              "(pip install 'human-motion[model]')") from e
        self.torch, self.cfg = torch, cfg
        self.device = auto_device(cfg.device)
        if cfg.dtype == "auto":  # bf16 on a GPU, fp32 on the CPU
            dtype = torch.bfloat16 if self.device.startswith("cuda") else torch.float32
        else:
            dtype = torch_dtype(cfg.dtype)
        # Code from the model's repository runs only when the config says so explicitly (caption.trust_remote_code).
        self.processor = AutoProcessor.from_pretrained(cfg.model, trust_remote_code=cfg.trust_remote_code)
        if not getattr(self.processor, "chat_template", None):
            raise ConfigError(f"{cfg.model}: the processor has no chat template; use an instruction-tuned model")
        self.processor.tokenizer.padding_side = "left"  # decoder-only generation continues from the right end
        self.model = AutoModelForImageTextToText.from_pretrained(cfg.model, dtype=dtype, **cfg.model_kwargs,
                                                                 trust_remote_code=cfg.trust_remote_code)
        if "device_map" in cfg.model_kwargs:  # accelerate placed it (a model larger than one GPU)
            self.device = str(self.model.device)
        else:
            self.model = self.model.to(self.device)
        self.model.eval()

    def generate(self, requests: list[CaptionRequest], attempt: int) -> list[str | Exception]:
        from PIL import Image

        torch = self.torch
        texts, images = [], []
        for req in requests:
            content = [{"type": "image"} for _ in req.images] + [{"type": "text", "text": req.prompt}]
            texts.append(self.processor.apply_chat_template([{"role": "user", "content": content}],
                                                            add_generation_prompt=True, tokenize=False))
            images.extend(Image.fromarray(im) for im in req.images)
        inputs = self.processor(text=texts, images=images, return_tensors="pt", padding=True).to(self.device)
        temperature = self.cfg.retry_temperature if attempt else self.cfg.temperature
        sampling = {"do_sample": True, "temperature": temperature} if temperature > 0 else {"do_sample": False}
        with torch.inference_mode():
            out = self.model.generate(**inputs, max_new_tokens=self.cfg.max_new_tokens, **sampling)
        new = out[:, inputs["input_ids"].shape[1]:]  # (b, new tokens)
        return list(self.processor.batch_decode(new, skip_special_tokens=True))


class VllmBackend:
    """vLLM's offline engine; ``caption.model_kwargs`` go to ``vllm.LLM`` (tensor_parallel_size,
    gpu_memory_utilization, max_model_len, ...)."""

    def __init__(self, cfg: CaptionConfig):
        try:
            from vllm import LLM, SamplingParams
        except ImportError as e:
            raise ImportError("caption.backend=vllm needs vLLM, which is not installed: `pip install vllm` on CUDA "
                              "machines (or serve the model with `vllm serve` and use caption.backend=endpoint)") from e
        self.cfg, self.sampling = cfg, SamplingParams
        kwargs = {"limit_mm_per_prompt": {"image": cfg.num_frames}, **cfg.model_kwargs,
                  "trust_remote_code": cfg.trust_remote_code}
        self.llm = LLM(model=cfg.model, **kwargs)

    def generate(self, requests: list[CaptionRequest], attempt: int) -> list[str | Exception]:
        params = self.sampling(temperature=self.cfg.retry_temperature if attempt else self.cfg.temperature,
                               max_tokens=self.cfg.max_new_tokens)
        outs = self.llm.chat([openai_messages(r) for r in requests], params, use_tqdm=False)
        return [o.outputs[0].text for o in outs]


class EndpointBackend:
    """An OpenAI-compatible chat endpoint; requests of a batch run in parallel threads."""

    def __init__(self, cfg: CaptionConfig):
        self.cfg = cfg
        url = cfg.endpoint_url.rstrip("/")
        self.url = url if url.endswith("/chat/completions") else url + "/chat/completions"
        self.headers = {"Content-Type": "application/json"}
        if cfg.api_key_env:
            key = os.environ.get(cfg.api_key_env)
            if not key:
                raise ConfigError(f"caption.api_key_env={cfg.api_key_env!r}, but that environment variable is not "
                                  "set (on a cluster, set it in every worker's environment)")
            self.headers["Authorization"] = f"Bearer {key}"

    def _post(self, req: CaptionRequest, temperature: float) -> str:
        body = {"model": self.cfg.model, "messages": openai_messages(req), "max_tokens": self.cfg.max_new_tokens,
                "temperature": temperature}
        if self.cfg.json_mode:
            body["response_format"] = {"type": "json_object"}
        http = urllib.request.Request(self.url, json.dumps(body).encode(), self.headers, method="POST")
        with urllib.request.urlopen(http, timeout=self.cfg.request_timeout_s) as resp:
            data = json.loads(resp.read())
        content = data["choices"][0]["message"]["content"]
        if isinstance(content, list):  # some servers answer with content parts
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        if not isinstance(content, str):
            raise InvalidAnswer("the endpoint's message has no text content")
        return content

    def generate(self, requests: list[CaptionRequest], attempt: int) -> list[str | Exception]:
        temperature = self.cfg.retry_temperature if attempt else self.cfg.temperature
        workers = max(1, min(self.cfg.max_parallel_requests, len(requests)))
        with concurrent.futures.ThreadPoolExecutor(workers) as pool:
            futures = [pool.submit(self._post, r, temperature) for r in requests]
        out: list[str | Exception] = []
        for f in futures:
            try:
                out.append(f.result())
            except InvalidAnswer as e:
                out.append(e)
            except (urllib.error.URLError, OSError, ValueError, KeyError, IndexError, TypeError) as e:
                out.append(RequestFailed(f"{type(e).__name__}: {e}"))
        return out


class RequestFailed(Exception):
    """The model could not be reached or answered with something that is not a chat completion."""


class CaptionFailed(Exception):
    """No valid answer after every retry: ``reason`` (caption_invalid | caption_request_failed) and ``detail``."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


BACKENDS = {"transformers": TransformersBackend, "vllm": VllmBackend, "endpoint": EndpointBackend}


class LMMCaptioner:
    """Validates and retries the answers of one backend; built once per Ray actor (it holds the model)."""

    def __init__(self, cfg: CaptionConfig):
        self.cfg = cfg
        self.backend = BACKENDS[cfg.backend](cfg)
        self.name = f"{cfg.backend}:{cfg.model}"

    def caption_many(self, requests: list[CaptionRequest]) -> list[CaptionAnswer | CaptionFailed]:
        """One answer or one rejection per request, in order."""
        cfg = self.cfg
        results: list[CaptionAnswer | CaptionFailed | None] = [None] * len(requests)
        errors: dict[int, tuple[str, str]] = {}
        todo = list(range(len(requests)))
        for attempt in range(cfg.max_retries + 1):
            if not todo:
                break
            if attempt and any(errors[i][0] == "caption_request_failed" for i in todo):
                time.sleep(min(30.0, cfg.retry_backoff_s * 2 ** (attempt - 1)))  # a busy server: back off
            try:
                texts = self.backend.generate([requests[i] for i in todo], attempt)
            except (RuntimeError, ValueError) as e:  # e.g. CUDA out of memory on this batch: every row fails alike
                texts = [RequestFailed(f"{type(e).__name__}: {e}")] * len(todo)
            retry = []
            for i, text in zip(todo, texts):
                tag = f"attempt {attempt + 1}/{cfg.max_retries + 1}"
                if isinstance(text, Exception):
                    reason = "caption_invalid" if isinstance(text, InvalidAnswer) else "caption_request_failed"
                    errors[i] = (reason, f"{tag}: {text}")
                    retry.append(i)
                    continue
                try:
                    action, description = parse_answer(text, cfg.max_action_words, cfg.max_description_chars)
                except InvalidAnswer as e:
                    errors[i] = ("caption_invalid", f"{tag}: {e}; answer: {clean_text(text)[:200]!r}")
                    retry.append(i)
                    continue
                results[i] = CaptionAnswer(action, description, attempt + 1, text[:2000])
            todo = retry
        for i in todo:
            results[i] = CaptionFailed(*errors[i])
        return results  # type: ignore[return-value]


def make_captioner(cfg: CaptionConfig) -> LMMCaptioner | None:
    """None for the landmark captioner (no model); else the LMM captioner of ``cfg.backend``."""
    if cfg.backend == "landmarks":
        return None
    if cfg.backend not in BACKENDS:
        raise ConfigError(f"unknown caption.backend {cfg.backend!r}; choose landmarks, {', '.join(BACKENDS)}")
    return LMMCaptioner(cfg)
