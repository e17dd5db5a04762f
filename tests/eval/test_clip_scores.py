"""CLIP-I / CLIP-T on a tiny CLIP match a direct computation with the model's own modules."""

from __future__ import annotations

import numpy as np
import torch

from human_motion.eval.clip_scores import ClipScorer


def _direct(path, frames, reference, prompt):
    from transformers import CLIPModel, CLIPProcessor

    model, proc = CLIPModel.from_pretrained(path).eval(), CLIPProcessor.from_pretrained(path)
    with torch.no_grad():
        def image(imgs):
            px = proc(images=list(imgs), return_tensors="pt")["pixel_values"]
            v = model.visual_projection(model.vision_model(pixel_values=px).pooler_output)
            return v / v.norm(dim=-1, keepdim=True)

        tok = proc(text=[prompt], return_tensors="pt", padding=True)
        t = model.text_projection(model.text_model(input_ids=tok["input_ids"],
                                                   attention_mask=tok["attention_mask"]).pooler_output)
        t = t / t.norm(dim=-1, keepdim=True)
        f = image(frames)
        return float((f @ image([reference])[0]).mean()), float((f @ t[0]).mean())


def test_clip_scores_match_direct_computation(tiny_clip, astronaut):
    rng = np.random.default_rng(0)
    frames = np.stack([astronaut, astronaut[:, ::-1], rng.integers(0, 255, astronaut.shape, dtype=np.uint8)])
    scorer = ClipScorer(str(tiny_clip), "cpu", batch_size=2)  # two batches: batching must not change the result
    got = scorer.score(frames, astronaut, "a woman smiling")
    clip_i, clip_t = _direct(tiny_clip, frames, astronaut, "a woman smiling")
    assert abs(got["clip_i"] - clip_i) < 1e-5
    assert abs(got["clip_t"] - clip_t) < 1e-5
    # The reference itself as every frame: CLIP-I is exactly the cosine of an embedding with itself.
    assert abs(scorer.score(np.stack([astronaut] * 2), astronaut, None)["clip_i"] - 1.0) < 1e-5


def test_clip_scores_skip_missing_inputs(tiny_clip, astronaut):
    scorer = ClipScorer(str(tiny_clip), "cpu")
    assert scorer.score(astronaut[None], None, None) == {}
    assert set(scorer.score(astronaut[None], None, "x")) == {"clip_t"}
