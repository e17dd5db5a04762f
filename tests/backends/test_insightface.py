"""insightface backends through insightface's own model zoo, with ONNX models this test exports (no download).

The recognition model is a tiny conv net with ArcFace's interface (1x3x112x112 -> 512); the detector is a graph with
SCRFD's nine outputs (scores, distances to the box sides and to the 5 points, at strides 8/16/32, 2 anchors a cell)
that returns fixed values, so insightface's own decoding, NMS and rescaling run on a known answer.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

pytest.importorskip("insightface")
pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")

from human_motion.backends.face_models import make_detector, make_embedder  # noqa: E402

DET_PX = 160  # the fake detector's fixed input side
CELL = (10, 8)  # (x, y) of the face's anchor cell at stride 8: anchor centre (80, 64)
BOX_D = (2.0, 2.0, 2.0, 3.0)  # distances to left, top, right, bottom, in strides
KPS_D = ((-1.0, -0.5), (1.0, -0.5), (0.0, 0.5), (-0.8, 1.5), (0.8, 1.5))


class TinyArcface(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, stride=4)
        self.pool = torch.nn.AdaptiveAvgPool2d(4)
        self.fc = torch.nn.Linear(128, 512)

    def forward(self, x):  # (b, 3, 112, 112) -> (b, 512)
        return self.fc(self.pool(torch.relu(self.conv(x))).flatten(1))


class FakeScrfd(torch.nn.Module):
    """SCRFD's outputs for one face at CELL (score 0.9) and a weaker duplicate anchor (0.6) that NMS must drop."""

    def __init__(self):
        super().__init__()
        outs = []
        for stride in (8, 16, 32):
            k = (DET_PX // stride) ** 2 * 2
            scores = np.full((k, 1), 0.01, np.float32)
            boxes, kps = np.ones((k, 4), np.float32), np.zeros((k, 10), np.float32)
            if stride == 8:
                a = (CELL[1] * (DET_PX // 8) + CELL[0]) * 2
                scores[a], scores[a + 1] = 0.9, 0.6
                boxes[a] = boxes[a + 1] = BOX_D
                kps[a] = np.asarray(KPS_D, np.float32).reshape(-1)
            outs.append((scores, boxes, kps))
        for i, group in enumerate(zip(*outs)):  # scores x3, boxes x3, kps x3 (insightface's order)
            for j, arr in enumerate(group):
                self.register_buffer(f"out{i}{j}", torch.from_numpy(arr))

    def forward(self, x):
        zero = x.mean() * 0.0  # keep the input in the graph
        return tuple(getattr(self, f"out{i}{j}") + zero for i in range(3) for j in range(3))


def export(model, path, shape, outputs, dynamic_batch):
    torch.onnx.export(model.eval(), torch.zeros(*shape), str(path), input_names=["data"],
                      output_names=[f"out{i}" for i in range(outputs)],
                      dynamic_axes={"data": {0: "batch"}} if dynamic_batch else None, dynamo=False)


@pytest.fixture(scope="module")
def pack(tmp_path_factory):
    """An insightface-layout root: <root>/models/tiny/{det_tiny.onnx, rec_tiny.onnx}; and the torch ArcFace."""
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("insightface")
    folder = root / "models" / "tiny"
    folder.mkdir(parents=True)
    arcface = TinyArcface()
    export(arcface, folder / "rec_tiny.onnx", (1, 3, 112, 112), 1, True)
    export(FakeScrfd(), folder / "det_tiny.onnx", (1, 3, DET_PX, DET_PX), 9, False)
    return root, arcface


def face_image(seed=0, side=320):
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 255, (side, side, 3), dtype=np.uint8)
    return np.ascontiguousarray(img)


KPS = np.array([[120, 130], [190, 128], [155, 170], [128, 205], [185, 203]], np.float32)


def test_arcface_from_a_pack_matches_the_model_on_the_aligned_crop(pack):
    from insightface.utils import face_align

    root, arcface = pack
    emb = make_embedder("insightface", str(root), "tiny")
    assert (emb.kind, emb.dim, emb.backend) == ("arcface", 512, "insightface:tiny/rec_tiny.onnx")
    assert "CPUExecutionProvider" in emb.version
    rgb = face_image()
    got = emb.embed(rgb, None, KPS)
    assert got.shape == (512,) and got.dtype == np.float32
    assert np.linalg.norm(got) == pytest.approx(1.0, abs=1e-5)

    # What the test expects: insightface's alignment on BGR, then the torch model on (RGB - 127.5) / 127.5.
    crop_bgr = face_align.norm_crop(rgb[..., ::-1].copy(), landmark=KPS, image_size=112)
    x = torch.from_numpy(crop_bgr[..., ::-1].copy()).permute(2, 0, 1)[None].float()
    with torch.no_grad():
        want = arcface((x - 127.5) / 127.5)[0].numpy()
    want /= np.linalg.norm(want)
    np.testing.assert_allclose(got, want, atol=1e-5)
    # The crop follows the landmarks: another face position gives another embedding.
    assert float(got @ emb.embed(rgb, None, KPS + 40)) < 0.9999

    batch = emb.embed_batch([(rgb, KPS), (face_image(1), KPS)])
    assert batch.shape == (2, 512)
    np.testing.assert_allclose(batch[0], got, atol=1e-5)
    with pytest.raises(ValueError, match="5-point landmarks"):
        emb.embed(rgb, None, None)


def test_insightface_deprecation_warning_is_not_the_users(pack):
    """norm_crop uses a scikit-image call deprecated in 0.26; every build's workers would print it."""
    root, _ = pack
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning fails, except what the backend itself silences
        emb = make_embedder("insightface", str(root), "tiny")
        assert emb.align(face_image(), KPS).shape == (112, 112, 3)


def test_scrfd_detections_come_back_in_image_pixels_with_five_points(pack):
    root, _ = pack
    det = make_detector("insightface", 0.5, str(root), "tiny")
    assert det.name == "insightface:tiny/det_tiny.onnx"
    found = det.detect(face_image(side=320))  # letterboxed into 160: coordinates scale by 2
    assert len(found) == 1  # the duplicate anchor is suppressed
    d = found[0]
    centre = np.array([CELL[0] * 8, CELL[1] * 8], np.float32)
    box = np.r_[centre - np.array(BOX_D[:2]) * 8, centre + np.array(BOX_D[2:]) * 8] * 2
    np.testing.assert_allclose(d.box, box, atol=1e-3)
    assert d.score == pytest.approx(0.9)
    np.testing.assert_allclose(d.kps5, (centre + np.array(KPS_D) * 8) * 2, atol=1e-3)
    assert d.kps5[0, 0] < d.kps5[1, 0]  # image-left eye first, like ArcFace's template


def test_pack_folder_given_directly_and_missing_pack_message(pack, tmp_path, monkeypatch):
    root, _ = pack
    emb = make_embedder("insightface", str(root / "models" / "tiny"), "ignored")
    assert emb.dim == 512
    # Offline: insightface's download fails; the error says where the files go.
    import insightface.utils.storage as storage

    def offline(*a, **k):
        raise OSError("network is unreachable")

    monkeypatch.setattr(storage, "download_file", offline)
    with pytest.raises(FileNotFoundError, match=r"models/buffalo_l"):
        make_embedder("insightface", str(tmp_path / "empty"), "buffalo_l")


def test_build_with_insightface_embedder_says_so_in_the_sample(pack, tmp_path):
    """The faces stage with the pack's ArcFace: a 512-d arcface.npy and an id_embedding naming the model file."""
    import io
    import json
    import tarfile

    from human_motion.engine.build import build
    from tests.conftest import small_build_config

    root, _ = pack
    cfg = small_build_config(**{"faces.embedder": "insightface", "faces.insightface_root": str(root),
                                "faces.insightface_pack": "tiny", "sources.demo.limit": 1})
    build(cfg, str(tmp_path / "out"))
    tars = sorted((tmp_path / "out").glob("*.tar"))
    assert tars
    with tarfile.open(tars[0]) as tf:
        names = tf.getnames()
        meta = json.loads(tf.extractfile(next(n for n in names if n.endswith(".json"))).read())
        emb = np.load(io.BytesIO(tf.extractfile(next(n for n in names if n.endswith("arcface.npy"))).read()))
    assert meta["id_embedding"] == {"kind": "arcface", "dim": 512, "backend": "insightface:tiny/rec_tiny.onnx"}
    assert emb.shape == (512,) and emb.dtype == np.float32


def test_cuda_provider_when_available_and_visible(monkeypatch):
    import onnxruntime

    from human_motion.backends.insightface_models import providers

    monkeypatch.setattr(onnxruntime, "get_available_providers",
                        lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert providers() == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert providers("cpu") == ["CPUExecutionProvider"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # a Ray actor without num_gpus
    assert providers() == ["CPUExecutionProvider"]
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    with pytest.raises(RuntimeError, match="onnxruntime-gpu"):
        providers("cuda")
