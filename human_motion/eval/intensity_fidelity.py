"""Intensity fidelity: does a generated video move as much as it was asked to?

Each video's intensity is measured with the build's own flow code (``backends.optical_flow.measure_intensity``: paper
Eq. 5-7 on consecutive frames, magnitudes in pixels per step at ``out_px``), the same units the model was trained on.
Frames that are not square are centre-cropped to a square first (the build's crops are square). Against the asked
intensities: Spearman's rho (the claim is monotone control), Pearson's r, the mean absolute error, per-asked-value
means, and a scatter plot. When the set holds the same (reference, prompt, action, seed) at several intensities, as
``--protocol`` makes it, the same checks within each such group: content held fixed, only the slider moved.
"""

from __future__ import annotations

import pathlib

import numpy as np

from human_motion.stages.flow import FlowConfig
from human_motion.backends.optical_flow import make_flow, measure_intensity


def centre_square(frames: np.ndarray) -> np.ndarray:
    h, w = frames.shape[1:3]
    s = min(h, w)
    y, x = (h - s) // 2, (w - s) // 2
    return frames[:, y:y + s, x:x + s]


class IntensityMeter:
    def __init__(self, cfg, device: str = "cpu"):
        self.cfg = cfg
        self.flow = make_flow(FlowConfig(backend=cfg.backend, work_px=cfg.work_px, raft_weights=cfg.raft_weights,
                                         device=device))

    @property
    def units(self) -> dict:
        return {"unit": "px_per_step", "backend": f"{self.flow.name} {self.flow.version}",
                "resolution_px": self.cfg.out_px, "work_px": self.cfg.work_px}

    def measure(self, frames: np.ndarray) -> float:
        intensity, _, _ = measure_intensity(centre_square(frames), self.flow, self.cfg.work_px, self.cfg.out_px)
        return float(intensity)


def fidelity_stats(asked, measured) -> dict:
    """Spearman, Pearson, MAE and per-asked-value means of paired (asked, measured) intensities."""
    from scipy import stats

    asked, measured = np.asarray(asked, np.float64), np.asarray(measured, np.float64)
    out: dict = {"n": int(len(asked)), "mae": float(np.mean(np.abs(measured - asked))) if len(asked) else None}
    if len(asked) >= 2 and np.ptp(asked) > 0 and np.ptp(measured) > 0:
        out["spearman"] = float(stats.spearmanr(asked, measured).statistic)
        out["pearson"] = float(stats.pearsonr(asked, measured).statistic)
    else:
        out["spearman"] = out["pearson"] = None  # undefined for constant inputs
    out["by_asked"] = {f"{a:g}": {"n": int((asked == a).sum()), "mean": float(measured[asked == a].mean()),
                                  "std": float(measured[asked == a].std())} for a in np.unique(asked)}
    return out


def within_group_stats(groups: dict) -> dict:
    """Per group of videos that differ only in the asked intensity: Spearman's rho, and whether the measured
    intensity rises strictly with the asked one. ``groups``: key -> [(asked, measured), ...]."""
    from scipy import stats

    rhos, monotone = [], []
    for pairs in groups.values():
        pairs = sorted(pairs)
        asked = np.array([a for a, _ in pairs], np.float64)
        measured = np.array([m for _, m in pairs], np.float64)
        if len(np.unique(asked)) < 2:
            continue
        if np.ptp(measured) > 0:
            rhos.append(float(stats.spearmanr(asked, measured).statistic))
        means = [measured[asked == a].mean() for a in np.unique(asked)]
        monotone.append(bool(np.all(np.diff(means) > 0)))
    return {"groups": len(monotone), "mean_spearman": float(np.mean(rhos)) if rhos else None,
            "fraction_monotone": float(np.mean(monotone)) if monotone else None}


def plot_fidelity(asked, measured, path: str | pathlib.Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    asked, measured = np.asarray(asked, float), np.asarray(measured, float)
    fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=120)
    jitter = np.random.default_rng(0).uniform(-0.15, 0.15, len(asked)) * (np.ptp(asked) or 1) / 20
    ax.scatter(asked + jitter, measured, s=14, alpha=0.7, label="videos")
    top = float(max(asked.max(initial=0), measured.max(initial=0))) * 1.05 + 1e-6
    ax.plot([0, top], [0, top], "k--", lw=1, label="measured = asked")
    values = np.unique(asked)
    ax.plot(values, [measured[asked == v].mean() for v in values], "r-o", ms=4, lw=1.5, label="mean per asked value")
    ax.set(xlabel="asked intensity (px/step)", ylabel="measured intensity (px/step)", title=title,
           xlim=(-0.02 * top, top), ylim=(-0.02 * top, top))
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
