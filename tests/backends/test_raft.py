"""torchvision RAFT through the flow stage, with weights this test saves to local files (random init: no download).

Random weights give meaningless flow, so these tests check the plumbing: both model sizes, both weight formats, fp32
and bf16 on the CPU, chunked pairs equal to one batch, magnitudes rescaled from work_px to the 512 scale, the
stage's outputs, and the errors a user meets. tests/stages/test_flow.py checks intensities on known motion.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from human_motion.engine.config import FlowConfig  # noqa: E402
from human_motion.backends.optical_flow import RaftFlow, flow_magnitudes  # noqa: E402
from human_motion.metrics import compute_flow_intensity, flow_maps_uint8  # noqa: E402
from human_motion.stages.flow import FlowIntensity, face_region_motion  # noqa: E402
from human_motion.types import Row  # noqa: E402
from tests.conftest import small_build_config  # noqa: E402
from tests.stages.test_flow import sampled_pan  # noqa: E402


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """raft_small as .pth and raft_large as .safetensors, random init with a fixed seed."""
    from safetensors.torch import save_file
    from torchvision.models.optical_flow import raft_large, raft_small

    folder = tmp_path_factory.mktemp("raft")
    torch.manual_seed(0)
    torch.save(raft_small(weights=None).state_dict(), folder / "raft_small.pth")
    save_file({k: v.contiguous() for k, v in raft_large(weights=None).state_dict().items()},
              str(folder / "raft_large.safetensors"))
    return {"raft_small": str(folder / "raft_small.pth"), "raft_large": str(folder / "raft_large.safetensors")}


def frames(n=4):
    return np.ascontiguousarray(sampled_pan(6.0)[:n])  # (n, 512, 512, 3)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("backend", ["raft_small", "raft_large"])
def test_flow_stage_with_raft_on_cpu(weights, backend, precision):
    cfg = small_build_config(**{"flow.backend": backend, "flow.raft_weights": weights[backend], "flow.work_px": 128,
                                "flow.raft_iters": 1, "flow.device": "cpu", "flow.precision": precision,
                                "decode.num_frames": 4})
    stage = FlowIntensity(cfg.flow)
    assert isinstance(stage.flow, RaftFlow) and stage.flow.device == "cpu"
    row = Row(0, 0, 1, {"clip_id": "pan", "static": False, "status": "ok", "scores": {}, "fps": 4.0,
                        "num_frames": 4, "faces": {"boxes": [[150, 100, 350, 330]] * 4}}, frames())
    [out] = stage.process_rows([row])
    rec = out.record
    assert rec["status"] == "ok", rec.get("detail")
    # The stage's numbers are the backend's magnitudes at the 512 scale through Eq. 5-7 (metrics.py), face box and all.
    magnitudes = flow_magnitudes(frames(), stage.flow, 128, 512)
    intensity, per_step, fg = compute_flow_intensity(magnitudes)
    assert rec["intensity"] == pytest.approx(intensity, rel=1e-5) and intensity > 0
    assert rec["intensity_per_step"] == pytest.approx(per_step.tolist(), rel=1e-5)
    assert rec["scores"]["face_flow_px"] == pytest.approx(
        face_region_motion(magnitudes, np.array([[150, 100, 350, 330]] * 4), 512), rel=1e-5)
    assert rec["intensity_units"] == {"unit": "px_per_step", "backend": backend, "resolution_px": 512, "fps": 4.0,
                                      "work_px": 128}
    assert rec["backends"]["flow"].startswith(f"{backend} torchvision ") and precision in rec["backends"]["flow"]
    maps = np.load(__import__("io").BytesIO(out.blobs["flow.npy"]))
    assert maps.shape == (3, 64, 64) and maps.dtype == np.uint8
    np.testing.assert_array_equal(maps, flow_maps_uint8(fg, 64))


def test_pairs_in_chunks_equal_one_batch_and_magnitudes_are_at_512_scale(weights):
    base = dict(backend="raft_small", raft_weights=weights["raft_small"], raft_iters=1, device="cpu", work_px=128)
    whole = RaftFlow(FlowConfig(**base))
    chunked = RaftFlow(FlowConfig(**base, raft_pairs_per_call=1))
    small = np.stack([f[::4, ::4] for f in frames()])  # (4, 128, 128, 3)
    a, b = whole(small), chunked(small)
    assert a.shape == (3, 128, 128, 2) and a.dtype == np.float32
    np.testing.assert_allclose(a, b, atol=1e-4)
    # flow_magnitudes resizes 512 -> work_px, then reports pixels at 512: 4x the work-resolution magnitude.
    mags = flow_magnitudes(frames(), whole, 128, 512)
    import cv2

    resized = np.stack([cv2.resize(f, (128, 128), interpolation=cv2.INTER_AREA) for f in frames()])
    np.testing.assert_allclose(mags, 4.0 * np.linalg.norm(whole(resized), axis=-1), rtol=1e-4, atol=1e-4)


def test_raft_configuration_errors(weights, tmp_path):
    with pytest.raises(ValueError, match="not a raft_large state dict"):
        RaftFlow(FlowConfig(backend="raft_large", raft_weights=weights["raft_small"], device="cpu"))
    with pytest.raises(FileNotFoundError, match="no file"):
        RaftFlow(FlowConfig(backend="raft_small", raft_weights=str(tmp_path / "missing.pth"), device="cpu"))
    with pytest.raises(ValueError, match="fp16 needs CUDA"):
        RaftFlow(FlowConfig(backend="raft_small", raft_weights=weights["raft_small"], device="cpu", precision="fp16"))
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="flow.num_gpus"):
            RaftFlow(FlowConfig(backend="raft_small", raft_weights=weights["raft_small"], device="cuda"))


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_raft_on_cuda_half_precision_runs(weights, precision):
    flow = RaftFlow(FlowConfig(backend="raft_large", raft_weights=weights["raft_large"], raft_iters=4, device="cuda",
                               precision=precision, work_px=256))
    small = np.stack([f[::2, ::2] for f in frames()])
    out = flow(small)
    assert out.shape == (3, 256, 256, 2) and np.isfinite(out).all()
