"""Multimodal captioners behind the caption stage, offline: a tiny Qwen2-VL built from a config (tokenizer trained
here, processor and chat template written here, saved to a folder and loaded back with from_pretrained), and an
OpenAI-compatible endpoint served by a local HTTP server that this test starts."""

from __future__ import annotations

import base64
import http.server
import json
import threading

import cv2
import numpy as np
import pytest

from human_motion.config import ConfigError
from human_motion.stages.caption import Caption
from human_motion.backends.captioners import InvalidAnswer, clean_text, make_captioner, parse_answer
from human_motion.engine.config import CaptionConfig
from human_motion.types import Row
from tests.conftest import small_build_config


def make_row(value: int, static: bool = False, n: int = 16) -> Row:
    frames = np.full((n, 64, 64, 3), value, np.uint8)
    record = {"clip_id": f"c{value}", "static": static, "labels": {}, "status": "ok", "scores": {}, "fps": 4.0,
              "faces": {"boxes": None}, "landmarks": {"features": []}}
    return Row(0, value, 1, record, frames)


# --- validation --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text,action", [
    ('{"action": "smiling", "description": "A woman smiles at the camera."}', "smiling"),
    ('Sure!\n```json\n{"Action": "Turning head to the left.", "description": "A man turns his head."}\n```',
     "turning head to the left"),
    ('{"action": "talking\u200b\x1b", "description": "A man\x00 talks\n to the camera."}', "talking"),
])
def test_valid_answers_are_cleaned(text, action):
    got, description = parse_answer(text)
    assert got == action
    assert all(c.isprintable() for c in description) and "  " not in description


@pytest.mark.parametrize("text,why", [
    ("The person is smiling.", "no JSON object"),
    ('{"action": "the person smiles", "description": "A woman smiles at the camera."}', "-ing"),
    ('{"action": "something", "description": "A woman smiles at the camera."}', "-ing"),
    ('{"action": "smiling and then turning head to the left", "description": "A woman smiles."}', "1-6"),
    ('{"action": "smiling", "description": "' + "x" * 401 + '"}', "characters"),
    ('{"action": "smiling", "description": "short"}', "characters"),
    ('{"action": ["smiling"], "description": "A woman smiles at the camera."}', "string values"),
])
def test_malformed_answers_are_refused_with_a_reason(text, why):
    with pytest.raises(InvalidAnswer, match=why):
        parse_answer(text)


def test_clean_text_strips_control_and_format_characters():
    assert clean_text("a\x00b\u202ec\td\r\n e") == "a b c d e"


def test_config_needs_a_model_and_an_url():
    with pytest.raises(ConfigError, match="caption.model"):
        CaptionConfig(backend="transformers")
    with pytest.raises(ConfigError, match="endpoint_url"):
        CaptionConfig(backend="endpoint", model="m")


def test_vllm_is_imported_only_when_chosen_with_an_install_hint():
    try:
        import vllm  # noqa: F401

        pytest.skip("vLLM is installed here; this checks the message shown without it")
    except ImportError:
        pass
    with pytest.raises(ImportError, match="pip install vllm"):
        make_captioner(CaptionConfig(backend="vllm", model="Qwen/Qwen2-VL-2B-Instruct"))


# --- endpoint ----------------------------------------------------------------------------------------------------

# The local server answers by the brightness of the first image, so parallel requests get their own answer.
ANSWERS = {
    50: '```json\n{"action": "Smiling", "description": "A man with short hair smiles at the camera."}\n```',
    100: "I think the person is smiling.",  # malformed: no JSON
    150: '{"action": "turning head\x1b to the left\u200b", "description": "A woman\x00 turns\n her head slowly."}',
    200: '{"action": "the person looks around", "description": "A person looks around the room."}',
}


@pytest.fixture()
def server():
    seen: list[dict] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            url = body["messages"][0]["content"][0]["image_url"]["url"]
            assert url.startswith("data:image/jpeg;base64,")
            img = cv2.imdecode(np.frombuffer(base64.b64decode(url.split(",", 1)[1]), np.uint8), cv2.IMREAD_COLOR)
            value = self.server.forced_value or int(round(img.mean() / 50.0)) * 50
            seen.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body, "value": value})
            if value == 250:
                self.send_response(500)
                self.end_headers()
                return
            reply = {"id": "x", "object": "chat.completion", "model": body["model"],
                     "choices": [{"index": 0, "message": {"role": "assistant", "content": ANSWERS[value]},
                                  "finish_reason": "stop"}]}
            data = json.dumps(reply).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.forced_value = None  # set to answer every request as if its image had this brightness
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1", seen, httpd
    httpd.shutdown()
    httpd.server_close()


def endpoint_stage(url, monkeypatch, **extra):
    monkeypatch.setenv("HM_TEST_KEY", "sekret")
    sets = {"caption.backend": "endpoint", "caption.model": "qwen2.5-vl-7b", "caption.endpoint_url": url,
            "caption.api_key_env": "HM_TEST_KEY", "caption.retry_backoff_s": 0, "caption.image_px": 64, **extra}
    return Caption(small_build_config(**sets).caption)


def test_endpoint_captioner_against_a_local_server(server, monkeypatch):
    url, seen, _ = server
    stage = endpoint_stage(url, monkeypatch)
    rows = stage.process_rows([make_row(v) for v in (50, 100, 150, 200, 250)])
    by = {r.record["clip_id"]: r.record for r in rows}

    ok = by["c50"]
    assert ok["status"] == "ok" and ok["action"] == "smiling"
    assert ok["description"] == "A man with short hair smiles at the camera."
    assert ok["caption"]["backend"] == "endpoint:qwen2.5-vl-7b" and ok["caption"]["attempts"] == 1
    assert ok["caption"]["candidates"]["landmarks"] == "keeping still"  # the cross-check column stays
    assert ok["backends"]["caption"] == "endpoint:qwen2.5-vl-7b"

    ctrl = by["c150"]
    assert ctrl["status"] == "ok" and ctrl["action"] == "turning head to the left"
    assert ctrl["description"] == "A woman turns her head slowly."

    for key, detail in (("c100", "no JSON object"), ("c200", "-ing verb")):
        assert by[key]["status"] == "caption_invalid" and by[key]["stage"] == "caption"
        assert "attempt 3/3" in by[key]["detail"] and detail in by[key]["detail"]
    assert by["c250"]["status"] == "caption_request_failed" and "500" in by["c250"]["detail"]

    # Requests: the chat-completions path, the key from the named variable, 4 JPEG frames, JSON mode; retries of
    # the invalid ones sample at retry_temperature.
    assert {s["path"] for s in seen} == {"/v1/chat/completions"}
    assert {s["auth"] for s in seen} == {"Bearer sekret"}
    first = next(s["body"] for s in seen if s["value"] == 50)
    assert first["model"] == "qwen2.5-vl-7b" and first["response_format"] == {"type": "json_object"}
    assert [c["type"] for c in first["messages"][0]["content"]] == ["image_url"] * 4 + ["text"]
    assert first["temperature"] == 0.0
    counts = {v: sum(s["value"] == v for s in seen) for v in (50, 100, 150, 200, 250)}
    assert counts == {50: 1, 100: 3, 150: 1, 200: 3, 250: 3}
    assert {s["body"]["temperature"] for s in seen if s["value"] == 100} == {0.0, 0.7}


def test_endpoint_static_sample_sends_one_image_and_missing_key_is_a_config_error(server, monkeypatch):
    url, seen, _ = server
    stage = endpoint_stage(url, monkeypatch)
    [row] = stage.process_rows([make_row(50, static=True, n=1)])
    assert row.ok and len(seen[0]["body"]["messages"][0]["content"]) == 2
    assert "portrait photo" in seen[0]["body"]["messages"][0]["content"][-1]["text"]
    monkeypatch.delenv("HM_TEST_KEY")
    with pytest.raises(ConfigError, match="HM_TEST_KEY"):
        Caption(small_build_config(**{"caption.backend": "endpoint", "caption.model": "m",
                                      "caption.endpoint_url": url, "caption.api_key_env": "HM_TEST_KEY"}).caption)


@pytest.mark.parametrize("value,status", [(50, "ok"), (100, "caption_invalid")])
def test_build_with_the_endpoint_captioner_writes_captions_or_rejects(server, monkeypatch, tmp_path, value, status):
    """A one-clip build in this process: the model's caption lands in the shard's json and index, or the window in
    rejects.parquet with the reason and detail."""
    import pyarrow.parquet as pq

    from human_motion.engine.build import build

    url, _, httpd = server
    httpd.forced_value = value
    monkeypatch.setenv("HM_TEST_KEY", "sekret")
    cfg = small_build_config(**{"caption.backend": "endpoint", "caption.model": "m", "caption.endpoint_url": url,
                                "caption.api_key_env": "HM_TEST_KEY", "caption.retry_backoff_s": 0,
                                "caption.max_retries": 1, "sources.demo.limit": 1})
    build(cfg, str(tmp_path / "out"))
    if status == "ok":
        index = pq.read_table(tmp_path / "out" / "index.parquet").to_pylist()
        assert index and all(r["action"] == "smiling" for r in index)
    else:
        rejects = pq.read_table(tmp_path / "out" / "rejects.parquet").to_pylist()
        caption = [r for r in rejects if r["reason"] == "caption_invalid"]
        assert caption and all(r["stage"] == "caption" and "attempt 2/2" in r["detail"] for r in caption)


# --- transformers: a tiny Qwen2-VL --------------------------------------------------------------------------------

SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>",
           "<|video_pad|>"]
# Qwen2-VL's chat template, reduced to what this test sends (user turns with images and text).
TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}{% for c in message['content'] %}"
    "{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@pytest.fixture(scope="module")
def tiny_qwen2_vl(tmp_path_factory):
    """A Qwen2-VL with 1 vision block and 1 text layer of width 32, a 300-token byte-level BPE, saved to a folder."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    torch.manual_seed(0)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=SPECIAL, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(['{"action": "smiling", "description": "A person smiles at the camera."}'], trainer)
    tokenizer = transformers.Qwen2TokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>",
                                                pad_token="<|endoftext|>", unk_token=None, bos_token=None)
    pixels = {"min_pixels": 56 * 56, "max_pixels": 56 * 56}  # 4x4 patches -> 4 tokens an image
    processor = transformers.Qwen2VLProcessor(
        image_processor=transformers.Qwen2VLImageProcessor(**pixels), tokenizer=tokenizer,
        video_processor=transformers.Qwen2VLVideoProcessor(**pixels), chat_template=TEMPLATE)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL}
    config = transformers.Qwen2VLConfig(
        text_config=dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=1024,
                         rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]},
                         bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"],
                         pad_token_id=ids["<|endoftext|>"]),
        vision_config=dict(depth=1, embed_dim=32, hidden_size=32, num_heads=2, mlp_ratio=2, patch_size=14,
                           spatial_merge_size=2, temporal_patch_size=2),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"])
    folder = tmp_path_factory.mktemp("tiny-qwen2-vl")
    transformers.Qwen2VLForConditionalGeneration(config).save_pretrained(folder)
    processor.save_pretrained(folder)
    return str(folder)


def transformers_stage(folder):
    return Caption(small_build_config(**{"caption.backend": "transformers", "caption.model": folder,
                                         "caption.num_frames": 2, "caption.image_px": 56,
                                         "caption.max_new_tokens": 8, "caption.max_retries": 1}).caption)


def test_tiny_qwen2_vl_runs_end_to_end_and_its_garbage_is_rejected(tiny_qwen2_vl):
    stage = transformers_stage(tiny_qwen2_vl)
    backend = stage.captioner.backend
    assert type(backend.model).__name__ == "Qwen2VLForConditionalGeneration"
    calls = []
    generate = backend.model.generate

    def spy(**inputs):
        calls.append({k: tuple(v.shape) for k, v in inputs.items() if hasattr(v, "shape")} | {
            "do_sample": inputs.get("do_sample")})
        return generate(**inputs)

    backend.model.generate = spy
    rows = stage.process_rows([make_row(60), make_row(180), make_row(90, static=True, n=1)])
    # One generate per attempt for the whole batch; 2 frames a video row, 1 for the still: 5 images of 4x4 patches.
    assert len(calls) == 2
    assert calls[0]["image_grid_thw"] == (5, 3) and calls[0]["input_ids"][0] == 3
    assert calls[0]["do_sample"] is False and calls[1]["do_sample"] is True
    for row in rows:
        assert row.record["status"] == "caption_invalid" and row.record["stage"] == "caption"
        assert "attempt 2/2" in row.record["detail"]


def test_tiny_qwen2_vl_valid_text_becomes_the_caption(tiny_qwen2_vl, monkeypatch):
    """The same path with the decoded text replaced by a valid answer: the row gets the model's caption."""
    stage = transformers_stage(tiny_qwen2_vl)
    processor = stage.captioner.backend.processor
    monkeypatch.setattr(processor, "batch_decode", lambda ids, **k: [
        '{"action": "nodding", "description": "A person nods at the camera."}'] * len(ids))
    [row] = stage.process_rows([make_row(60)])
    assert row.ok and row.record["action"] == "nodding"
    assert row.record["caption"]["backend"] == f"transformers:{tiny_qwen2_vl}"
    assert row.record["caption"]["candidates"]["landmarks"] == "keeping still"
