"""CLIP-I and CLIP-T with a transformers ``CLIPModel`` (hub id or local folder).

CLIP-I: cosine between the CLIP image embedding of the reference image and of each frame, averaged over frames.
CLIP-T: cosine between the CLIP text embedding of the prompt and each frame's image embedding, averaged over frames.
Both are raw cosines of the projected, L2-normalised embeddings (not x100, not clipped at 0); images go through the
model's own ``CLIPProcessor`` (shortest side resize + centre crop).
"""

from __future__ import annotations

import numpy as np


def _features(out):
    """transformers < 5 returns the projected tensor, >= 5 an output whose ``pooler_output`` is projected."""
    return out if hasattr(out, "shape") else out.pooler_output


class ClipScorer:
    """Loads ``model`` with ``from_pretrained`` (``local_files_only``: from a folder or the hub cache, no network);
    an ``OSError`` means the model could not be had (``hm eval`` then skips CLIP-I/CLIP-T and says why)."""

    def __init__(self, model: str, device: str = "cpu", batch_size: int = 16, local_files_only: bool = False):
        import torch
        from transformers import CLIPModel, CLIPProcessor

        self.torch = torch
        self.model = CLIPModel.from_pretrained(model, local_files_only=local_files_only).eval().to(device)
        self.processor = CLIPProcessor.from_pretrained(model, local_files_only=local_files_only)
        self.device = device
        self.batch_size = batch_size
        self.name = model
        crop = getattr(self.processor.image_processor, "crop_size", None)  # a dict, or transformers 5's SizeDict
        sides = [getattr(crop, k, None) if not isinstance(crop, dict) else crop.get(k) for k in ("height", "width")]
        self.min_side_px = int(min(v for v in sides if v) if any(sides) else 0)  # smaller frames are upsampled

    def image_embeddings(self, images) -> np.ndarray:
        """(n, d) L2-normalised image embeddings of RGB uint8 images."""
        torch = self.torch
        out = []
        with torch.inference_mode():
            for i in range(0, len(images), self.batch_size):
                batch = [np.asarray(im) for im in images[i:i + self.batch_size]]
                pixels = self.processor(images=batch, return_tensors="pt")["pixel_values"].to(self.device)
                out.append(_features(self.model.get_image_features(pixel_values=pixels)).float().cpu())
        emb = torch.cat(out)
        return torch.nn.functional.normalize(emb, dim=-1).numpy()

    def text_embeddings(self, texts: list[str]) -> np.ndarray:
        torch = self.torch
        tokens = self.processor(text=texts, return_tensors="pt", padding=True, truncation=True)
        with torch.inference_mode():
            emb = _features(self.model.get_text_features(input_ids=tokens["input_ids"].to(self.device),
                                                         attention_mask=tokens["attention_mask"].to(self.device)))
        return torch.nn.functional.normalize(emb.float().cpu(), dim=-1).numpy()

    def score(self, frames: np.ndarray, reference: np.ndarray | None, prompt: str | None) -> dict:
        frame_emb = self.image_embeddings(list(frames))  # (t, d)
        out = {}
        if reference is not None:
            out["clip_i"] = float((frame_emb @ self.image_embeddings([reference])[0]).mean())
        if prompt is not None:
            out["clip_t"] = float((frame_emb @ self.text_embeddings([prompt])[0]).mean())
        return out
