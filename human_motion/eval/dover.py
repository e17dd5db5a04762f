"""The DOVER score (Wu et al., ICCV 2023), computed only with the real DOVER model: the ``dover`` package of the
VQAssessment/DOVER repository (installed from a clone: ``pip install .``), its ``dover.yml`` and ``DOVER.pth``.
Without them the metric is *not reported*; nothing here approximates it.

Per video, as the repository's ``evaluate_one_video.py`` does: the ``val-l1080p`` sampling of ``dover.yml``
(aesthetic and technical views), the model's two raw scores, then the score-level fusion into [0, 1]
(the fixed version of the script: ``t = (technical - 0.1107) / 0.07355``, ``a = (aesthetic + 0.08285) / 0.03774``,
``overall = sigmoid(0.6104 t + 0.3896 a)``). The table reports ``overall``; the raw scores are kept per video.
"""

from __future__ import annotations

import math

from human_motion.eval.weights import load_weights

MEAN = (123.675, 116.28, 103.53)
STD = (58.395, 57.12, 57.375)


def fuse_dover(aesthetic: float, technical: float) -> dict:
    """DOVER's default score-level fusion of the raw (aesthetic, technical) outputs into [0, 1] scores."""
    t, a = (technical - 0.1107) / 0.07355, (aesthetic + 0.08285) / 0.03774
    x = 0.6104 * t + 0.3896 * a
    sig = lambda v: 1.0 / (1.0 + math.exp(-v))  # noqa: E731
    return {"dover": sig(x), "dover_aesthetic": sig(a), "dover_technical": sig(t)}


class DoverScorer:
    def __init__(self, config_path: str, weights_path: str, device: str = "cpu"):
        try:
            import torch
            import yaml
            from dover.datasets import UnifiedFrameSampler, spatial_temporal_view_decomposition
            from dover.models import DOVER
        except ImportError as e:
            raise ImportError("the DOVER score needs the `dover` package of the VQAssessment/DOVER repository "
                              "(clone it, then `pip install .`; it reads videos with decord); "
                              f"missing {e.name!r}") from e
        with open(config_path, encoding="utf-8") as f:
            opt = yaml.safe_load(f)
        self.torch, self.decompose = torch, spatial_temporal_view_decomposition
        self.model = DOVER(**opt["model"]["args"]).to(device).eval()
        self.model.load_state_dict(load_weights(weights_path, "dover.weights"))  # tensors only, never unpickled
        self.sample_types = opt["data"]["val-l1080p"]["args"]["sample_types"]
        self.samplers = {}
        for stype, s in self.sample_types.items():
            if "t_frag" not in s:  # technical view
                self.samplers[stype] = UnifiedFrameSampler(s["clip_len"], s["num_clips"], s["frame_interval"])
            else:  # aesthetic view
                self.samplers[stype] = UnifiedFrameSampler(s["clip_len"] // s["t_frag"], s["t_frag"],
                                                           s["frame_interval"], s["num_clips"])
        self.device = device
        self.name = f"DOVER ({weights_path})"

    def score(self, video_path: str) -> dict:
        torch = self.torch
        views, _ = self.decompose(str(video_path), self.sample_types, self.samplers)
        mean, std = torch.tensor(MEAN), torch.tensor(STD)
        for k, v in views.items():  # v: (c, t, h, w) 0..255
            n = self.sample_types[k].get("num_clips", 1)
            views[k] = (((v.permute(1, 2, 3, 0) - mean) / std).permute(3, 0, 1, 2)
                        .reshape(v.shape[0], n, -1, *v.shape[2:]).transpose(0, 1).to(self.device))
        with torch.no_grad():
            aesthetic, technical = (float(r.mean()) for r in self.model(views))
        return {**fuse_dover(aesthetic, technical), "dover_raw_aesthetic": aesthetic, "dover_raw_technical": technical}
