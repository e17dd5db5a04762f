"""The instruments of ``identity_control.py``: who a generated clip shows, how like its reference it is, and how much
its face region moves. None of them is part of the model.

Identity: the build's own face code. BlazeFace finds the face (dlib's HOG detector where BlazeFace finds none: at
32 px it misses a few faces, e.g. one with large glasses) and dlib's ResNet (``faces.embedder: dlib``, the
128-d embedding the shards carry) embeds it, on each frame enlarged from the generated 32 px to 128 px (bicubic);
each reference portrait goes the same way (shrunk to the generated size first, then enlarged), so both sides of a
comparison lose the same detail and the cosine speaks of the person, not of the pixels the small size dropped. A
clip's similarity to a person is the mean cosine over its embedded frames; the person it shows is the most similar
reference. dlib's network was trained by metric learning on about three million faces elsewhere and is not the
model's phi (a small CNN trained here with ArcFace's margin loss, ``model/face_embedder.py``): the loss cannot fit
the instrument. On the training clips themselves, after the VAE, it names the right seen person in 0.958 of them,
with a cosine margin of only ~0.04 over the nearest other person (the ceiling the run prints): at 32 px it is near
its floor, hence the second instrument, ``PixelIdentity``, below.

Face-region motion: DIS flow (the build's backend) between consecutive frames, its magnitude averaged inside the
face box found in the later frame, in 512-px pixels per step (the paper's units).
"""

from __future__ import annotations

import numpy as np

UP_PX = 128  # frames are enlarged to this side before detection and embedding (a 14-px face becomes ~58 px)


class IdentityInstrument:
    """Reads frames (t, s, s, 3) uint8 RGB at the generated size; writes face boxes, embeddings and similarities."""

    def __init__(self, size_px: int, up_px: int = UP_PX):
        from human_motion.backends.face_models import DlibDetector, DlibEmbedder, MediapipeDetector

        self.size_px, self.up_px = size_px, up_px
        self.detector, self.fallback, self.embedder = MediapipeDetector(0.3), DlibDetector(0.3, 1), DlibEmbedder()
        self.name = (f"{self.detector.name} (else {self.fallback.name}) + {self.embedder.backend} on frames enlarged "
                     f"{size_px} -> {up_px} px")

    def _big(self, frame: np.ndarray) -> np.ndarray:
        import cv2

        return cv2.resize(frame, (self.up_px, self.up_px), interpolation=cv2.INTER_CUBIC)

    def boxes(self, frames: np.ndarray) -> list[np.ndarray | None]:
        """The most confident face of each frame, [x0, y0, x1, y1] in the enlarged frame's pixels, or None."""
        out = []
        for frame in frames:
            big = self._big(frame)
            dets = self.detector.detect(big) or self.fallback.detect(big)
            out.append(max(dets, key=lambda d: d.score).box if dets else None)
        return out

    def embed(self, frame: np.ndarray, box: np.ndarray) -> np.ndarray:
        return self.embedder.embed(self._big(frame), box)

    def reference(self, portrait: np.ndarray) -> np.ndarray:
        """A reference portrait (any size) -> its embedding at the generated size; raises when no face is found."""
        import cv2

        small = cv2.resize(portrait, (self.size_px, self.size_px), interpolation=cv2.INTER_AREA)
        box = self.boxes(small[None])[0]
        if box is None:
            raise RuntimeError("no face found in a reference portrait at the generated size")
        return self.embed(small, box)

    def clip(self, frames: np.ndarray, references: np.ndarray, embed_frames: list[int]) -> dict:
        """Boxes on every frame; dlib embeddings of ``embed_frames`` (those with a face) and their mean cosine with
        each row of ``references`` (n, 128) -> {"boxes", "sims" (n,) or None, "embedded"}."""
        boxes = self.boxes(frames)
        embeds = [self.embed(frames[i], boxes[i]) for i in embed_frames if boxes[i] is not None]
        sims = (np.stack(embeds) @ references.T).mean(0) if embeds else None
        return {"boxes": boxes, "sims": sims, "embedded": len(embeds)}


class PixelIdentity:
    """The second identity instrument, in pixels: how near a clip's frames come to each person's training frames at
    the generated size, after the VAE (what the model could have learnt of that person at all).

    ``bank`` maps a person to (frames (n, s, s, 3) uint8, the clip each frame comes from (n,)). A frame's distance
    to a person is its RMS difference in [0, 1] to that person's nearest training frame; a clip's similarity to the
    person is 1 minus the mean over its frames. Nearest frames make the measure indifferent to where in a pan or
    zoom a frame is (every position was trained on), and ``exclude`` leaves a training clip's own frames out when it
    is itself measured. It reads the whole frame (face, hair, clothes, background), so it says the generated clip
    has the reference person's appearance; dlib's instrument says whether the face alone is recognisable, which at
    32 px it barely is even for the training clips (the ceiling)."""

    name = "nearest training frame of each person (RMS difference at the generated size, after the VAE)"

    def __init__(self, bank: dict[str, tuple[np.ndarray, np.ndarray]], people: list[str]):
        self.people = people
        self.frames = {p: bank[p][0].reshape(len(bank[p][0]), -1).astype(np.float64) / 255 for p in people}
        self.clips = {p: np.asarray(bank[p][1]) for p in people}

    def sims(self, frames: np.ndarray, exclude: str | None = None) -> np.ndarray:
        """(len(people),): 1 - mean over ``frames`` of the RMS difference to each person's nearest frame."""
        x = frames.reshape(len(frames), -1).astype(np.float64) / 255
        out = []
        for p in self.people:
            bank = self.frames[p] if exclude is None else self.frames[p][self.clips[p] != exclude]
            d2 = (x * x).sum(1)[:, None] - 2 * x @ bank.T + (bank * bank).sum(1)[None]
            out.append(1.0 - float(np.sqrt(np.maximum(d2.min(1), 0) / x.shape[1]).mean()))
        return np.asarray(out)


def face_region_motion(flows: np.ndarray, boxes: list[np.ndarray | None], up_px: int, out_px: int) -> float | None:
    """Flow fields (t-1, s, s, 2) of a clip and the face boxes of its t frames (enlarged-frame pixels, or None) ->
    the mean flow magnitude inside the face box of each step's later frame, in pixels per step at ``out_px``; None
    when no step has a box."""
    size = flows.shape[1]
    scale = size / up_px
    values = []
    for i, flow in enumerate(flows):
        box = boxes[i + 1]
        if box is None:
            continue
        x0, y0, x1, y1 = (int(round(float(v) * scale)) for v in box)
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, size), min(y1, size)
        if x1 - x0 < 2 or y1 - y0 < 2:
            continue
        values.append(float(np.linalg.norm(flow[y0:y1, x0:x1], axis=-1).mean()))
    return float(np.mean(values)) * out_px / size if values else None


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% interval of a binomial proportion (Wilson score), for accuracies and for chance."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (float(centre - half), float(centre + half))


def binomial_chance_interval(n: int, p: float, level: float = 0.95) -> tuple[float, float]:
    """The central ``level`` range of the accuracy a guesser right with probability ``p`` gets on ``n`` trials."""
    from scipy.stats import binom

    lo, hi = binom.ppf((1 - level) / 2, n, p), binom.ppf(1 - (1 - level) / 2, n, p)
    return (float(lo / n), float(hi / n))


def paired_bootstrap(a: np.ndarray, b: np.ndarray, seed: int = 0, draws: int = 4000) -> dict:
    """Mean of a - b over paired clips and its 95% bootstrap interval (clips resampled with replacement)."""
    d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, len(d), (draws, len(d)))].mean(1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return {"mean": float(d.mean()), "ci95": [float(lo), float(hi)], "n": len(d)}
