"""Quality stage: text-overlay and image-quality scores, their select thresholds, and the optional backends."""

from __future__ import annotations

import pathlib
import sys
import types

import cv2
import numpy as np
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / "sources"))
from corpora import face_frames, fast_config, read_rejects, read_samples

from human_motion.media import write_mp4
from human_motion.backends.ocr import mser_text_boxes, union_frac
from human_motion.stages.quality import Quality
from human_motion.stages.select import select_step
from human_motion.types import Row

FACE = np.array([100, 75, 410, 435], np.float32)  # face box of face_frames(512, 512, ..., (0.2, 0.15, 0.8, 0.85))


def frame(text: str | None = None, side: int = 512) -> np.ndarray:
    f = face_frames(side, side, 0.25, (0.2, 0.15, 0.8, 0.85))[0].copy()
    if text:
        cv2.putText(f, text, (int(0.04 * side), int(0.96 * side)), cv2.FONT_HERSHEY_SIMPLEX, side / 512,
                    (255, 255, 255), max(1, side // 256))
    return f


def row(frames: np.ndarray) -> Row:
    boxes = [(FACE * frames.shape[1] / 512).tolist()] * len(frames)
    return Row(0, 0, 1, {"clip_id": "x", "status": "ok", "faces": {"boxes": boxes}, "scores": {}}, frames)


def test_mser_finds_a_caption_line_and_nothing_on_a_clean_face():
    assert mser_text_boxes(cv2.cvtColor(frame(), cv2.COLOR_RGB2GRAY), FACE) == []
    lines = mser_text_boxes(cv2.cvtColor(frame("SUBSCRIBE NOW 2024"), cv2.COLOR_RGB2GRAY), FACE)
    assert len(lines) == 1
    x0, y0, x1, y1 = lines[0]
    assert y0 > 440 and y1 < 512 and x1 - x0 > 250


@pytest.mark.parametrize("photo", ["astronaut", "hopper"])
def test_no_text_on_real_portraits(photo):
    """Badges, stars, a cap's insignia, wrinkles and a space suit's seams are not text (earlier false positives)."""
    from human_motion.sources.demo import _photos, render

    path, face = _photos()[photo]
    img = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    for f in render(img, face, "rotate", 3.0)[::6]:
        assert mser_text_boxes(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY)) == []


@pytest.mark.parametrize("kind", ["caption", "banner", "subtitle"])
def test_overlays_of_several_styles_are_found(kind):
    f = frame()
    if kind == "caption":
        cv2.putText(f, "BREAKING NEWS", (40, 480), cv2.FONT_HERSHEY_SIMPLEX, 1.2, (255, 255, 255), 3)
    elif kind == "banner":
        cv2.rectangle(f, (0, 430), (512, 480), (255, 255, 255), -1)
        cv2.putText(f, "Interview with the mayor", (20, 465), cv2.FONT_HERSHEY_DUPLEX, 0.9, (20, 20, 20), 2)
    else:
        for colour, thickness in (((0, 0, 0), 5), ((255, 230, 0), 2)):
            cv2.putText(f, "I never said that", (90, 470), cv2.FONT_HERSHEY_TRIPLEX, 1.0, colour, thickness)
    lines = mser_text_boxes(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY), FACE)
    assert union_frac(lines, 512, 512) > 0.01


def test_union_frac():
    assert union_frac([], 10, 10) == 0.0
    assert union_frac([(0, 0, 5, 10), (0, 0, 5, 5), (5, 0, 10, 5)], 10, 10) == 0.75


def test_stage_scores_and_thresholds():
    cfg = fast_config({"demo": {}})
    stage = Quality(cfg.quality)
    clean, texted = row(np.stack([frame()] * 3)), row(np.stack([frame("SUBSCRIBE NOW 2024")] * 3))
    blurred = row(np.stack([cv2.GaussianBlur(frame(), (0, 0), 12)] * 3))
    out = stage.process_rows([clean, texted, blurred])
    assert all(r.ok for r in out)  # thresholds are off by default
    assert out[0].record["scores"]["text_frac"] == 0.0 and out[1].record["scores"]["text_frac"] > 0.02
    assert out[0].record["scores"]["image_quality"] > 0.8 > 0.25 > out[2].record["scores"]["image_quality"]
    assert out[0].record["backends"]["text"].startswith("rapidocr ")  # the default: PP-OCRv6's detector
    assert out[0].record["backends"]["image_quality"] == "sharpness"

    strict = fast_config({"demo": {}}, **{"select.max_text_frac": 0.01, "select.min_image_quality": 0.25})
    rows = [row(np.stack([frame()] * 3)), row(np.stack([frame("SUBSCRIBE NOW 2024")] * 3)),
            row(np.stack([cv2.GaussianBlur(frame(), (0, 0), 12)] * 3))]
    out = select_step("text_overlay", "low_quality")(strict.select).process_rows(
        Quality(strict.quality).process_rows(rows))  # the stage scores; the select step after it applies thresholds
    assert [r.record.get("status") for r in out] == ["ok", "text_overlay", "low_quality"]
    assert "select.max_text_frac=0.01" in out[1].record["detail"]


def test_easyocr_backend(monkeypatch):
    calls = []

    class Reader:
        def __init__(self, langs, **kwargs):
            calls.append((langs, kwargs))

        def readtext(self, image):
            return [([[10, 450], [300, 450], [300, 500], [10, 500]], "SUBSCRIBE", 0.9),
                    ([[0, 0], [5, 0], [5, 5], [0, 5]], "?", 0.1)]

    monkeypatch.setitem(sys.modules, "easyocr", types.SimpleNamespace(Reader=Reader))
    cfg = fast_config({"demo": {}}, **{"quality.text_backend": "easyocr", "quality.easyocr_model_dir": "/m",
                                       "quality.device": "cpu"})
    out = Quality(cfg.quality).process_rows([row(np.stack([frame()] * 2))])
    assert calls == [(["en"], {"gpu": False, "model_storage_directory": "/m", "download_enabled": False})]
    assert out[0].record["scores"]["text_frac"] == pytest.approx(290 * 50 / 512**2, rel=0.05)


def test_easyocr_missing_gives_an_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "easyocr", None)
    with pytest.raises(ImportError, match="pip install easyocr"):
        Quality(fast_config({"demo": {}}, **{"quality.text_backend": "easyocr"}).quality)


def test_clip_iqa_scoring(monkeypatch):
    torch = pytest.importorskip("torch")

    class Model:
        def get_image_features(self, pixel_values):
            return torch.tensor([[1.0, 0.2]])

    class Processor:
        def __call__(self, images, return_tensors):
            return {"pixel_values": torch.zeros(1, 3, 8, 8)}

    text = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), dim=-1)  # "good", "bad"
    monkeypatch.setattr(Quality, "_load_clip", lambda self: (Model(), Processor(), text, "cpu"))
    cfg = fast_config({"demo": {}}, **{"quality.iq_backend": "clip_iqa", "quality.text_backend": "none"})
    out = Quality(cfg.quality).process_rows([row(np.stack([frame()] * 2))])
    image = torch.nn.functional.normalize(torch.tensor([[1.0, 0.2]]), dim=-1)
    expected = (100 * image @ text.T).softmax(-1)[0, 0].item()
    assert out[0].record["scores"]["image_quality"] == pytest.approx(expected)
    assert "text_frac" not in out[0].record["scores"]
    assert out[0].record["backends"]["image_quality"].startswith("clip_iqa ")


def test_build_rejects_a_captioned_video_unless_text_is_kept(tmp_path):
    from human_motion.engine.build import build

    videos = tmp_path / "videos"
    videos.mkdir()
    face = face_frames(256, 256, 1.5, (0.3, 0.3, 0.7, 0.7))
    write_mp4(str(videos / "clean.mp4"), face, 4.0)
    captioned = face.copy()
    for f in captioned:
        cv2.putText(f, "BREAKING NEWS", (56, 192), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1)
    write_mp4(str(videos / "captioned.mp4"), captioned, 4.0)
    sets = {"decode.size_px": 256, "decode.crop_scale": 4.0}
    build(fast_config({"folder": {"root": str(videos)}}, **sets, **{"select.max_text_frac": 1.0}),
          str(tmp_path / "lenient"))
    assert set(read_samples(tmp_path / "lenient")) == {"clean.mp4", "captioned.mp4"}
    build(fast_config({"folder": {"root": str(videos)}}, **sets, **{"select.max_text_frac": 0.01}),
          str(tmp_path / "strict"))
    assert set(read_samples(tmp_path / "strict")) == {"clean.mp4"}
    assert read_rejects(tmp_path / "strict") == {"captioned.mp4": "text_overlay"}


def test_paper_preset_and_example_config_load():
    from human_motion.config import load_config, packaged_config, read_config_file
    from human_motion.engine.config import BuildConfig

    paper = load_config(BuildConfig, packaged_config("paper"), base={"sources": {"demo": {}}})
    assert paper.select.min_source_side_px == 512 and paper.select.max_text_frac == 0.003
    assert paper.select.min_image_quality > 0 and "quality" in paper.stages
    example = read_config_file(packaged_config("paper").parent / "hm.toml")
    cfg = load_config(BuildConfig, None, base=example)
    assert set(cfg.sources) == {"celebv-hq", "celebv-text", "vfhq", "aahq"}
    assert cfg.sources["vfhq"].limit == 2000 and cfg.sources["celebv-hq"].options["layout"] == "auto"


def write_tiny_clip(folder: pathlib.Path) -> None:
    """A randomly initialised CLIP of a few thousand parameters with a character-level tokenizer, saved like a
    hub checkpoint (no download): exercises the real transformers loading and feature calls."""
    import json
    import string

    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    chars = string.ascii_lowercase + ".,!?'-"
    tokens = list(chars) + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))
    small = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, projection_dim=8)
    # The text model pools at the end-of-text token: its id must be the tokenizer's (CLIP's default, 49407, is
    # outside this vocabulary, and every prompt would pool at its first token and embed alike).
    cfg = CLIPConfig(text_config=dict(small, vocab_size=len(tokens), max_position_embeddings=32,
                                      bos_token_id=len(tokens) - 2, eos_token_id=len(tokens) - 1,
                                      pad_token_id=len(tokens) - 1),
                     vision_config=dict(small, image_size=32, patch_size=8), projection_dim=8)
    CLIPModel(cfg).save_pretrained(folder)
    image_processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    CLIPProcessor(image_processor, tokenizer).save_pretrained(folder)


def clip_iqa_by_definition(folder: pathlib.Path, frame: np.ndarray) -> float:
    """CLIP-IQA (Wang et al., AAAI 2023) written out with the checkpoint's own modules: the softmax over the
    antonym prompts "Good photo." / "Bad photo." of 100 x the cosine of their embeddings with the image's; the
    share of "good"."""
    import torch
    from transformers import CLIPModel, CLIPProcessor

    model, processor = CLIPModel.from_pretrained(folder).eval(), CLIPProcessor.from_pretrained(folder)
    with torch.no_grad():
        tokens = processor(text=["Good photo.", "Bad photo."], return_tensors="pt", padding=True)
        text = model.text_projection(model.text_model(input_ids=tokens["input_ids"],
                                                      attention_mask=tokens["attention_mask"]).pooler_output)
        pixels = processor(images=[frame], return_tensors="pt")["pixel_values"]
        image = model.visual_projection(model.vision_model(pixel_values=pixels).pooler_output)
        cos = torch.nn.functional.cosine_similarity(image, text)  # (2,)
        return float((100 * cos).softmax(-1)[0])


def test_clip_iqa_with_a_local_checkpoint(tmp_path):
    """The real transformers path on a tiny random CLIP: the score of a window is CLIP-IQA of its middle frame,
    computed independently; the other frames score otherwise, so the test sees which frame was scored."""
    torch = pytest.importorskip("torch")
    from transformers import CLIPModel, CLIPProcessor

    folder = tmp_path / "clip"
    torch.manual_seed(0)
    write_tiny_clip(folder)
    # Random embeddings make 100 x cosine saturate the softmax (every frame 0 or 1). Shrinking the image embeddings
    # along the good-minus-bad direction brings the scores to 0.7-0.9, where the frame and the temperature show.
    model, processor = CLIPModel.from_pretrained(folder), CLIPProcessor.from_pretrained(folder)
    with torch.no_grad():
        tokens = processor(text=["Good photo.", "Bad photo."], return_tensors="pt", padding=True)
        text = model.text_projection(model.text_model(**tokens).pooler_output)
        text = text / text.norm(dim=-1, keepdim=True)
        d = (text[0] - text[1]) / (text[0] - text[1]).norm()
        model.visual_projection.weight -= 0.98 * torch.outer(d, d @ model.visual_projection.weight)
    model.save_pretrained(folder)

    cfg = fast_config({"demo": {}}, **{"quality.iq_backend": "clip_iqa", "quality.clip_model": str(folder),
                                       "quality.device": "cpu", "quality.text_backend": "none"})
    noise = np.random.default_rng(0).integers(0, 256, (512, 512, 3), dtype=np.uint8)
    frames = np.stack([frame(), 255 - frame(), noise])  # the middle: 1
    out = Quality(cfg.quality).process_rows([row(frames)])
    assert out[0].ok, out[0].record.get("detail")
    expected = [clip_iqa_by_definition(folder, f) for f in frames]
    assert out[0].record["scores"]["image_quality"] == pytest.approx(expected[1], abs=1e-5)
    assert 0.05 < expected[1] < 0.95 and min(abs(expected[1] - expected[0]), abs(expected[1] - expected[2])) > 0.01
    assert out[0].record["backends"]["image_quality"] == f"clip_iqa {folder}"
