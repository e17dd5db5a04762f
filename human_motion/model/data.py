"""Training data: ``get_dataset(cfg, ...)`` dispatches on ``data.dataset_type`` ("wds" shards | "synthetic").

Both yield the same samples (see ``decode_sample``) and resume exactly. The unit of position is the *slot*: slot k
is the k-th draw of the run; it picks a stream (video or static, by ``static_ratio``) and takes that stream's next
sample. Everything random about slot k (stream choice, flip, dropouts) comes from ``default_rng([seed, k])``, and
shard order and shuffling from ``default_rng([seed, epoch, stream])``, so a run resumed at slot k replays the first
k draws without decoding them and then sees exactly what an uninterrupted run would have seen. Rank r of a
data-parallel job takes the slots k = r (mod world size).

Bad samples are skipped and counted by reason (``BadSamples``), never replaced by another sample; too many of them
stop the run. A sample whose identity embedding is of another kind than the config's stops the run at once.
"""

from __future__ import annotations

import collections
import io
import itertools
import json
import logging
import pathlib
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from human_motion.config import ConfigError
from human_motion.model.config import DataConfig, ModelConfig
from human_motion.model.selection import read_selection, repeats

logger = logging.getLogger(__name__)


class BadSample(Exception):
    """A sample that cannot be used; ``reason`` is a short code counted in ``BadSamples``."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


class TooManyBadSamples(ConfigError):
    """More than ``data.max_bad_fraction`` of the samples read were bad: the shards, not one sample, are wrong."""


class BadSamples:
    """Counts skipped samples by reason, keeps a few examples, and stops the run past ``max_fraction``."""

    def __init__(self, max_fraction: float, min_reads: int = 20, max_examples: int = 5, where: str = "the data"):
        self.counts: collections.Counter[str] = collections.Counter()
        self.examples: list[str] = []
        self.reads = 0
        self.max_fraction, self.min_reads, self.max_examples, self.where = max_fraction, min_reads, max_examples, where

    def add(self, reason: str, detail: str) -> None:
        self.counts[reason] += 1
        detail = " ".join(str(detail).split())[:200]  # one line, whatever the decoder said
        if len(self.examples) < self.max_examples:
            self.examples.append(f"{reason}: {detail}")
        logger.warning("skipping a bad sample (%s): %s", reason, detail)
        bad = sum(self.counts.values())
        if self.reads >= self.min_reads and bad > self.max_fraction * self.reads:
            counts = ", ".join(f"{k} {v}" for k, v in self.counts.most_common())
            raise TooManyBadSamples(
                f"{self.where}: {bad} of the first {self.reads} samples read were bad ({counts}; e.g. "
                f"{self.examples[0]}); check the shards with `hm verify`, rebuild them, or raise "
                f"data.max_bad_fraction (now {self.max_fraction})")

    def handler(self, exn: Exception) -> bool:
        """webdataset handler for unreadable tars/members: count and go on (webdataset's ``warn_and_continue``)."""
        self.add("read_error", repr(exn))
        return True

    def summary(self) -> dict:
        return {"reads": self.reads, "bad": dict(self.counts)}


def _load_npy(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)


def _decode_mp4(data: bytes, max_frames: int | None = None) -> np.ndarray:
    """The first ``max_frames`` frames (all when None) as (n, H, W, 3) uint8 RGB. One FFmpeg thread: the loader
    already decodes samples side by side (``SlotDataset``), and FFmpeg's own threads, started for every clip opened,
    cost more than a short clip takes to decode (the 8 frames a step uses of a 16-frame 128-px shard clip: about half
    the wall time and the CPU, the same pixels; benchmarks/loader_decode.py)."""
    import av

    with av.open(io.BytesIO(data)) as container:
        if not container.streams.video:
            raise BadSample("decode_failed", "no video stream in mp4")
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1
        frames = [f.to_ndarray(format="rgb24")
                  for f in itertools.islice(container.decode(stream), max_frames)]
    if not frames:
        raise BadSample("decode_failed", "no frames in mp4")
    return np.stack(frames)  # (n, H, W, 3)


def is_static(raw: dict, meta: dict | None = None) -> bool:
    """A static (image) sample: the old layout stores ``jpg`` and no ``mp4``; the new one an ``mp4`` of one frame
    repeated, with ``"static": true`` in its json. Either way its first frame is the image."""
    if "mp4" not in raw:
        return True
    if meta is None:
        try:
            meta = json.loads(raw.get("json") or b"{}")
        except ValueError:
            return False  # decode_sample reports the bad json
    return meta.get("static") is True


def _decode_image(data: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        return np.array(img.convert("RGB"))  # (H, W, 3), writable


def check_embedding(meta: dict, model: ModelConfig) -> None:
    """Refuse identity embeddings of another kind or width than the config's (a 128-d dlib vector fed to a 512-d
    ArcFace projector would train on garbage); this stops the run, it is not a per-sample skip."""
    info = meta.get("id_embedding") or {}
    kind, dim = info.get("kind"), info.get("dim")
    if kind != model.id_embedding_kind or dim != model.id_embedding_dim:
        raise ConfigError(
            f"sample {meta.get('key')!r} carries a {kind!r} identity embedding ({dim}-d) but the config expects "
            f"{model.id_embedding_kind!r} ({model.id_embedding_dim}-d); train with --set model.id_embedding_kind="
            f"{kind} --set model.id_embedding_dim={dim}, or use shards built with the {model.id_embedding_kind} backend"
        )


def _resize_crop(x: torch.Tensor, size: int) -> tuple[torch.Tensor, tuple[float, float, float]]:
    """(n, c, H, W) -> (n, c, size, size): resize the short side to ``size``, centre-crop (the paper's transform).
    Also returns (scale, x offset, y offset) mapping source pixels to output pixels, for the face boxes."""
    h, w = x.shape[-2:]
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    if (nh, nw) != (h, w):
        x = F.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False, antialias=True)
    top, left = (nh - size) // 2, (nw - size) // 2
    return x[..., top : top + size, left : left + size], (scale, -left, -top)


def decode_sample(raw: dict, cfg: DataConfig, model: ModelConfig, rng: np.random.Generator) -> dict:
    """One raw shard sample (schema.py members) -> training sample:

    pixel_values (f, 3, R, R) in [-1, 1]; flow (f, R/8, R/8) foreground flow magnitude per frame (frame j takes the
    step that ends at it, frame 0 the first step; zeros for static samples); face_boxes (f, 4) [x0, y0, x1, y1] in
    0..1; face (3, S, S) reference crop in [-1, 1]; id_embedding (D,); intensity (); text, action, key (str);
    static, drop_image, drop_clip (bool).
    """
    meta = json.loads(raw["json"])
    check_embedding(meta, model)
    static = is_static(raw, meta)
    if "mp4" not in raw and "jpg" not in raw:
        raise BadSample("missing_member", f"{meta.get('key')}: neither mp4 nor jpg")
    n = cfg.num_frames * cfg.frame_stride
    if static:  # one image as n identical frames, intensity 0 ("zero-intensity calibration")
        image = _decode_image(raw["jpg"]) if "jpg" in raw else _decode_mp4(raw["mp4"], max_frames=1)[0]
        frames = np.repeat(image[None], n, axis=0)
    else:
        frames = _decode_mp4(raw["mp4"], max_frames=n)  # the window is the clip's first n frames
        if len(frames) < n:
            raise BadSample("too_few_frames", f"{meta.get('key')}: {len(frames)} < {n}")
    picked = np.arange(0, n, cfg.frame_stride)
    video = torch.from_numpy(frames[picked]).permute(0, 3, 1, 2).float() / 127.5 - 1  # (f, 3, H, W)
    video, (scale, dx, dy) = _resize_crop(video, cfg.resolution)

    flow_steps = torch.from_numpy(_load_npy(raw["flow.npy"]).astype(np.float32))  # (steps, h, w)
    if static or flow_steps.shape[0] == 0:
        flow = torch.zeros(len(picked), *flow_steps.shape[1:])
    else:
        flow = flow_steps[np.clip(picked - 1, 0, flow_steps.shape[0] - 1)]  # (f, h, w)
    flow = F.interpolate(flow[None], size=(cfg.resolution // 8,) * 2, mode="bilinear", align_corners=False)[0]

    boxes = np.asarray((meta.get("faces") or {}).get("boxes") or [], np.float32).reshape(-1, 4)
    if len(boxes) == 0:
        raise BadSample("no_face_boxes", str(meta.get("key")))
    boxes = boxes[np.clip(picked, 0, len(boxes) - 1)] * scale + np.array([dx, dy, dx, dy], np.float32)
    boxes = np.clip(boxes / cfg.resolution, 0.0, 1.0)  # (f, 4) in 0..1 of the output frame

    if rng.random() < cfg.flip_prob:
        video, flow = video.flip(-1), flow.flip(-1)
        boxes = np.stack([1 - boxes[:, 2], boxes[:, 1], 1 - boxes[:, 0], boxes[:, 3]], axis=1)

    face = torch.from_numpy(_decode_image(raw["face.jpg"])).permute(2, 0, 1).float()[None] / 127.5 - 1
    face = F.interpolate(face, size=(cfg.face_size,) * 2, mode="bilinear", align_corners=False, antialias=True)[0]
    embedding = _load_npy(raw["arcface.npy"]).astype(np.float32).reshape(-1)
    if embedding.shape[0] != model.id_embedding_dim:
        detail = f"{meta.get('key')}: {embedding.shape[0]} values, not {model.id_embedding_dim}"
        raise BadSample("bad_embedding", detail)
    return {
        "pixel_values": video,
        "flow": flow,
        "face_boxes": torch.from_numpy(boxes),
        "face": face,
        "id_embedding": torch.from_numpy(embedding),
        "intensity": torch.tensor(0.0 if static else float(meta["intensity"])),
        "text": "" if rng.random() < cfg.text_drop_prob else str(meta.get("description", "")),
        "action": str(meta.get("action", "")),
        "key": str(meta.get("key", raw.get("__key__", ""))),
        "static": static,
        "drop_image": bool(rng.random() < cfg.image_drop_prob),
        "drop_clip": bool(rng.random() < cfg.clip_drop_prob),
    }


def collate(samples: list[dict]) -> dict:
    return {k: torch.stack([s[k] for s in samples]) if isinstance(samples[0][k], torch.Tensor)
            else torch.tensor([s[k] for s in samples]) if isinstance(samples[0][k], bool)
            else [s[k] for s in samples] for k in samples[0]}


def list_shards(shards: str) -> list[str]:
    """A folder of ``*.tar`` (as ``hm build`` writes), or any webdataset URL pattern (``data/{000000..000099}.tar``)."""
    path = pathlib.Path(shards)
    if path.is_dir():
        urls = sorted(str(p) for p in path.glob("*.tar"))
        if not urls:
            raise ConfigError(f"no .tar shards in {shards}; pass the output folder of `hm build`")
        return urls
    if "{" not in shards and "://" not in shards and not path.exists():
        raise ConfigError(f"{shards}: no such folder or file; pass the output folder of `hm build` (or a shard "
                          "pattern such as data/{000000..000009}.tar)")
    import webdataset as wds

    return list(wds.shardlists.expand_urls(shards))


class SlotDataset:
    """Base of both datasets: deterministic slots, rank split, ordered decoding on a thread pool, batching."""

    def __init__(self, cfg: DataConfig, model: ModelConfig, seed: int, rank: int = 0, world_size: int = 1,
                 num_threads: int = 0):
        self.cfg, self.model, self.seed = cfg, model, seed
        self.rank, self.world_size, self.num_threads = rank, world_size, num_threads
        self.bad = BadSamples(cfg.max_bad_fraction)

    def raw_slots(self, start: int) -> Iterator[tuple[int, object]]:  # (slot, raw item) for slots >= start
        raise NotImplementedError

    def decode(self, slot: int, raw) -> dict:
        raise NotImplementedError

    def _try_decode(self, slot: int, raw) -> dict | None:
        try:
            return self.decode(slot, raw)
        except ConfigError:
            raise
        except BadSample as e:
            self.bad.add(e.reason, str(e))
        except (OSError, ValueError, KeyError, EOFError) as e:  # av.FFmpegError and PIL errors are OSErrors
            key = raw.get("__key__") if isinstance(raw, dict) else raw
            self.bad.add("decode_failed", f"{key}: {e!r}")
        return None

    def samples(self, start: int = 0) -> Iterator[tuple[int, dict | None]]:
        """(slot, sample or None when bad), in slot order; decoding runs ``num_threads`` ahead (PyAV and PIL
        release the GIL, so threads decode in parallel while the order stays exact)."""
        mine = ((k, raw) for k, raw in self.raw_slots(start) if k % self.world_size == self.rank)
        if self.num_threads <= 0:
            for k, raw in mine:
                self.bad.reads += 1
                yield k, self._try_decode(k, raw)
            return
        with ThreadPoolExecutor(self.num_threads) as pool:
            pending = collections.deque()
            for k, raw in itertools.chain(mine, [None]):
                if k is not None:
                    pending.append((k, pool.submit(self._try_decode, k, raw)))
                while pending and (k is None or len(pending) > 2 * self.num_threads):
                    slot, future = pending.popleft()
                    self.bad.reads += 1
                    yield slot, future.result()

    def batches(self, batch_size: int, start: int = 0) -> Iterator[tuple[dict, int]]:
        """(collated batch, the slot to resume from once this batch is done)."""
        buf = []
        for slot, sample in self.samples(start):
            if sample is not None:
                buf.append(sample)
            if len(buf) == batch_size:
                yield collate(buf), slot + 1
                buf = []


class ShardDataset(SlotDataset):
    """Reads WebDataset shards with the ``webdataset`` library; see the module docstring for the slot order."""

    def __init__(self, shards: str, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.bad.where = str(shards)
        self.urls = list_shards(shards)
        self.selection = read_selection(self.cfg.keys_file) if self.cfg.keys_file else None
        self.weighted = self.selection is not None and any(w != 1.0 for w in self.selection.values())

    def _stream(self, static: bool | None, stream_id: int) -> Iterator[dict]:
        """Raw samples of one kind (``None``: both), forever: each epoch shuffles the shard order, then a buffer."""
        import webdataset as wds

        for epoch in itertools.count():
            rng = np.random.default_rng([self.seed, epoch, stream_id])
            weight_rng = np.random.default_rng([self.seed, epoch, stream_id, 3])
            urls = list(self.urls)
            rng.shuffle(urls)
            pipeline = wds.DataPipeline(wds.SimpleShardList(urls), wds.tarfile_to_samples(handler=self.bad.handler))
            buffer, seen, heaviest = [], 0, 0.0
            for raw in pipeline:
                if static is not None and is_static(raw) != static:
                    continue
                n = 1
                if self.selection is not None:
                    weight = self.selection.get(raw.get("__key__"))
                    if weight is None:
                        continue
                    n = repeats(weight, weight_rng) if self.weighted else 1
                    heaviest = max(heaviest, weight)
                seen += 1
                for _ in range(n):  # a sample drawn twice is decoded twice, with its own flip and window
                    buffer.append(raw)
                    if len(buffer) >= self.cfg.shuffle_buffer:
                        yield buffer.pop(rng.integers(len(buffer)))
            while buffer:
                yield buffer.pop(rng.integers(len(buffer)))
            kind = {None: "", True: "static ", False: "video "}[static]
            if not seen:
                raise ConfigError(f"{self.bad.where}: no {kind}samples in {len(self.urls)} shards; check the shards "
                                  "(`hm verify`) or data.static_ratio")
            if self.selection is not None and not heaviest:
                raise ConfigError(f"every {kind}sample of data.keys_file has weight 0; check it or data.static_ratio")

    def raw_slots(self, start: int) -> Iterator[tuple[int, dict]]:
        ratio = self.cfg.static_ratio
        streams = {None: self._stream(None, 0)} if ratio is None else {}
        for k in itertools.count():
            if ratio is None:
                kind = None
            else:
                kind = bool(np.random.default_rng([self.seed, k, 1]).random() < ratio)
                if kind not in streams:
                    streams[kind] = self._stream(kind, 1 + int(kind))
            raw = next(streams[kind])
            if k >= start:  # slots before start are replayed without decoding
                yield k, raw

    def decode(self, slot: int, raw: dict) -> dict:
        return decode_sample(raw, self.cfg, self.model, np.random.default_rng([self.seed, slot, 2]))


class SyntheticDataset(SlotDataset):
    """``num_synthetic_samples`` random clips (fixed per index) cycled forever; same fields as shard samples."""

    def raw_slots(self, start: int) -> Iterator[tuple[int, int]]:
        return ((k, k % self.cfg.num_synthetic_samples) for k in itertools.count(start))

    def decode(self, slot: int, index: int) -> dict:
        gen = torch.Generator().manual_seed(self.seed * 1000 + index)
        f, r = self.cfg.num_frames, self.cfg.resolution
        static = index % 4 == 3
        return {
            "pixel_values": torch.rand(f, 3, r, r, generator=gen) * 2 - 1,
            "flow": torch.zeros(f, r // 8, r // 8) if static else torch.rand(f, r // 8, r // 8, generator=gen) * 255,
            "face_boxes": torch.tensor([[0.25, 0.25, 0.75, 0.75]]).repeat(f, 1),
            "face": torch.rand(3, self.cfg.face_size, self.cfg.face_size, generator=gen) * 2 - 1,
            "id_embedding": F.normalize(torch.randn(self.model.id_embedding_dim, generator=gen), dim=0),
            "intensity": torch.tensor(0.0 if static else float(index % 20)),
            "text": f"synthetic clip {index}",
            "action": "" if static else ["smiling", "nodding"][index % 2],
            "key": f"synthetic__{index}",
            "static": static,
            "drop_image": False,
            "drop_clip": False,
        }


def get_dataset(cfg: DataConfig, model: ModelConfig, shards: str | None, seed: int, rank: int = 0,
                world_size: int = 1, num_threads: int = 0) -> SlotDataset:
    if cfg.dataset_type == "wds":
        if not shards:
            raise ConfigError("data.dataset_type is 'wds': pass the shards folder (hm train SHARDS ...)")
        return ShardDataset(shards, cfg, model, seed, rank, world_size, num_threads)
    if cfg.dataset_type == "synthetic":
        return SyntheticDataset(cfg, model, seed, rank, world_size, num_threads)
    raise ConfigError(f"unknown data.dataset_type {cfg.dataset_type!r}; use wds or synthetic")
