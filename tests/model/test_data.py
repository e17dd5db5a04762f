"""Shard loader: sample fields, static samples, flips, dropout flags, bad samples, exact resume, embedding kind."""

from __future__ import annotations

import pytest
import torch

from human_motion.config import ConfigError
from human_motion.model.config import DataConfig
from human_motion.model.data import get_dataset

from .conftest import tiny_model_config
from .shards import write_shards


def data_cfg(**kw) -> DataConfig:
    values = dict(resolution=32, num_frames=4, frame_stride=4, face_size=32, shuffle_buffer=4)
    values.update(kw)
    return DataConfig(**values)


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return write_shards(tmp_path_factory.mktemp("shards"), num_video=4, num_static=2, corrupt=1)


def take(ds, n, batch_size=2, start=0):
    it = ds.batches(batch_size, start)
    return [next(it) for _ in range(n)]


@pytest.fixture(scope="module")
def mp4_static_shards(tmp_path_factory):
    """The layout the build moves to: static samples as an mp4 of the image repeated, ``"static": true``."""
    return write_shards(tmp_path_factory.mktemp("shards_mp4"), num_video=4, num_static=2, corrupt=1,
                        static_layout="mp4")


@pytest.mark.parametrize("layout", ["jpg", "mp4"])
def test_sample_fields_and_static_samples(layout, request):
    shards = request.getfixturevalue({"jpg": "shards", "mp4": "mp4_static_shards"}[layout])
    ds = get_dataset(data_cfg(flip_prob=0.0), tiny_model_config(), str(shards), seed=0)
    samples = [s for _, s in zip(range(7), (s for _, s in ds.samples()))]
    good = [s for s in samples if s is not None]
    assert len(good) == 6 and sum(s is None for s in samples) == 1  # the corrupt mp4 is skipped, not replaced
    assert ds.bad.counts == {"decode_failed": 1}
    for s in good:
        assert s["pixel_values"].shape == (4, 3, 32, 32) and s["pixel_values"].abs().max() <= 1
        assert s["flow"].shape == (4, 4, 4) and s["face_boxes"].shape == (4, 4) and s["face"].shape == (3, 32, 32)
        assert s["id_embedding"].shape == (128,)
        if s["static"]:  # one image repeated, no motion, no intensity
            assert torch.equal(s["pixel_values"], s["pixel_values"][:1].expand(4, -1, -1, -1))
            assert s["intensity"] == 0 and s["flow"].abs().sum() == 0
        else:
            assert s["intensity"] > 0 and s["flow"].sum() > 0 and s["action"]
    assert {s["static"] for s in good} == {True, False}


def test_flip_mirrors_frames_flow_and_boxes(shards):
    plain = get_dataset(data_cfg(flip_prob=0.0), tiny_model_config(), str(shards), seed=0)
    flipped = get_dataset(data_cfg(flip_prob=1.0), tiny_model_config(), str(shards), seed=0)
    a, b = next(s for _, s in plain.samples() if s), next(s for _, s in flipped.samples() if s)
    assert a["key"] == b["key"]
    torch.testing.assert_close(b["pixel_values"], a["pixel_values"].flip(-1))
    torch.testing.assert_close(b["flow"], a["flow"].flip(-1))
    torch.testing.assert_close(b["face_boxes"][:, 0], 1 - a["face_boxes"][:, 2])


def test_dropout_flags_follow_probabilities(shards):
    ds = get_dataset(data_cfg(text_drop_prob=1.0, image_drop_prob=0.0, clip_drop_prob=1.0), tiny_model_config(),
                     str(shards), seed=0)
    batch, _ = take(ds, 1)[0]
    assert batch["text"] == ["", ""] and batch["drop_clip"].all() and not batch["drop_image"].any()


def test_resume_from_slot_gives_the_same_batches(shards):
    cfg = data_cfg(static_ratio=0.4)
    full = take(get_dataset(cfg, tiny_model_config(), str(shards), seed=3), 6)
    resumed = take(get_dataset(cfg, tiny_model_config(), str(shards), seed=3, num_threads=2), 3, start=full[2][1])
    for (a, _), (b, _) in zip(full[3:], resumed):
        assert a["key"] == b["key"]
        torch.testing.assert_close(a["pixel_values"], b["pixel_values"])
    statics = sum(int(b["static"].sum()) for b, _ in full)
    assert 0 < statics < 12


def test_rank_split_is_disjoint(shards):
    cfg = data_cfg()
    slots = []
    for rank in (0, 1):
        ds = get_dataset(cfg, tiny_model_config(), str(shards), seed=0, rank=rank, world_size=2)
        slots.append([k for _, (k, _) in zip(range(6), ds.samples())])
    assert slots == [[0, 2, 4, 6, 8, 10], [1, 3, 5, 7, 9, 11]]


def test_wrong_embedding_kind_is_refused(tmp_path):
    arcface = write_shards(tmp_path, num_video=1, num_static=0, kind="arcface", dim=512)
    ds = get_dataset(data_cfg(), tiny_model_config(), str(arcface), seed=0)  # the config expects dlib / 128
    with pytest.raises(ConfigError, match=r"'arcface' identity embedding \(512-d\).*expects 'dlib' \(128-d\)"):
        take(ds, 1, batch_size=1)


def test_synthetic_dataset():
    ds = get_dataset(data_cfg(dataset_type="synthetic"), tiny_model_config(), None, seed=0)
    batch, slot = take(ds, 1, batch_size=3)[0]
    assert batch["pixel_values"].shape == (3, 4, 3, 32, 32) and slot == 3


@pytest.mark.parametrize("layout", ["jpg", "mp4"])
def test_static_ratio_extremes(layout, request):
    shards = request.getfixturevalue({"jpg": "shards", "mp4": "mp4_static_shards"}[layout])
    only_static = take(get_dataset(data_cfg(static_ratio=1.0), tiny_model_config(), str(shards), seed=0), 2)
    only_video = take(get_dataset(data_cfg(static_ratio=0.0), tiny_model_config(), str(shards), seed=0), 2)
    assert all(b["static"].all() for b, _ in only_static)
    assert all((b["intensity"] == 0).all() and b["flow"].abs().sum() == 0 for b, _ in only_static)
    assert not any(b["static"].any() for b, _ in only_video)


def test_keys_file_restricts_training_to_a_selected_subset(shards, tmp_path):
    """`hm select` writes keys; the loader then reads only those samples (others are passed over, not bad)."""
    import webdataset as wds

    from human_motion.model.data import list_shards

    keys = sorted(s["__key__"] for s in wds.WebDataset(list_shards(str(shards)), shardshuffle=False)
                  if "mp4" in s and s["__key__"])[:2]
    path = tmp_path / "subset.txt"
    path.write_text("".join(f"{k}\t1.0\n" for k in keys))
    ds = get_dataset(data_cfg(keys_file=str(path)), tiny_model_config(), str(shards), seed=0)
    seen = [sample["key"] for (_, sample), _ in zip(ds.samples(), range(6)) if sample is not None]
    assert seen and set(seen) <= set(keys)
    with pytest.raises(ConfigError, match="does not exist"):
        get_dataset(data_cfg(keys_file=str(tmp_path / "none.txt")), tiny_model_config(), str(shards), seed=0)


@pytest.mark.parametrize("fmt", ["txt", "parquet"])
def test_weights_file_draws_samples_in_proportion(shards, tmp_path, fmt):
    """`hm select --weights` output: each pass draws a sample floor(w) or floor(w)+1 times (w on average); weight 0
    never; samples not listed never."""
    import itertools

    import pyarrow as pa
    import pyarrow.parquet as pq
    import webdataset as wds

    from human_motion.model.data import list_shards

    keys = sorted(s["__key__"] for s in wds.WebDataset(list_shards(str(shards)), shardshuffle=False)
                  if "mp4" in s and s["__key__"])[:4]
    weights = dict(zip(keys, [3.0, 0.5, 0.0, 1.0]))
    path = tmp_path / f"weights.{fmt}"
    if fmt == "txt":
        path.write_text("".join(f"{k}\t{w}\n" for k, w in weights.items()))
    else:
        pq.write_table(pa.table({"key": list(weights), "weight": list(weights.values())}), path)
    ds = get_dataset(data_cfg(keys_file=str(path)), tiny_model_config(), str(shards), seed=0)
    drawn = [raw["__key__"] for raw in itertools.islice(ds._stream(None, 0), 900)]
    counts = {k: drawn.count(k) for k in keys}
    assert set(drawn) <= set(keys) and counts[keys[2]] == 0
    assert counts[keys[0]] == pytest.approx(3 * counts[keys[3]], rel=0.02)  # 3.0 is drawn exactly 3 times a pass
    assert counts[keys[1]] == pytest.approx(0.5 * counts[keys[3]], rel=0.25)

    zero = tmp_path / "zero.txt"
    zero.write_text(f"{keys[0]}\t0\n")
    with pytest.raises(ConfigError, match="not all 0"):
        get_dataset(data_cfg(keys_file=str(zero)), tiny_model_config(), str(shards), seed=0)
    bad = tmp_path / "bad.txt"
    bad.write_text(f"{keys[0]}\tmany\n")
    with pytest.raises(ConfigError, match="not a number"):
        get_dataset(data_cfg(keys_file=str(bad)), tiny_model_config(), str(shards), seed=0)


def test_mp4_decoding_reads_the_window_only_and_refuses_a_file_without_video(tmp_path):
    import io

    import av
    import numpy as np

    from human_motion.media import encode_mp4
    from human_motion.model.data import BadSample, _decode_mp4

    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (12, 32, 32, 3), dtype=np.uint8)
    data = encode_mp4(frames, fps=4)
    everything = _decode_mp4(data)
    assert everything.shape == (12, 32, 32, 3)
    assert np.array_equal(_decode_mp4(data, max_frames=5), everything[:5])  # the same pixels, fewer frames

    buf = io.BytesIO()  # an mp4 with an audio track and no video
    with av.open(buf, "w", format="mp4") as out:
        stream = out.add_stream("aac", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 8000
        for packet in [*stream.encode(frame), *stream.encode()]:
            out.mux(packet)
    with pytest.raises(BadSample, match="no video stream"):
        _decode_mp4(buf.getvalue())
