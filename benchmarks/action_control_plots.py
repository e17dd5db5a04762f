"""Pictures of ``action_control.py``: measured against asked per action for each model, the confusion matrices, and
the grid of generated clips (actions as rows, intensities as columns) as a GIF and as a PNG of frames."""

from __future__ import annotations

import pathlib

import numpy as np

TITLES = {"full": "full Motion Control Module", "no_intensity": "without the intensity branch",
          "no_action": "without the action branch"}
COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red")


def _fidelity(ax, model: dict, intensities: list[float], kinds: list[str], title: str) -> None:
    lim = max(intensities) * 1.15
    ax.plot([0, lim], [0, lim], color="0.7", lw=1)
    rows = model["rows"]
    for i, (kind, color) in enumerate(zip(kinds, COLORS)):
        mine = [r for r in rows if r["action"] == kind]
        asked = np.array([r["asked"] for r in mine])
        meas = np.array([r["measured"] for r in mine])
        offset = (i - 1.5) * 0.35
        s = model["intensity_by_action"][kind]
        ax.scatter(asked + offset, meas, s=10, alpha=0.6, color=color,
                   label=f"{kind}: Spearman {s['spearman']:.2f}, MAE {s['mae']:.1f}")
        ax.plot(intensities, [meas[asked == v].mean() for v in intensities], color=color, lw=1.2)
    h = model["headline"]
    ax.set_title(f"{title}\npooled Spearman {h['intensity_spearman_pooled']:.2f}, "
                 f"action accuracy {h['action_accuracy']:.2f}", fontsize=9)
    ax.set_xlabel("asked intensity (px per step at 512 px)")
    ax.set_ylabel("measured (DIS)")
    ax.set_xlim(-1.5, lim)
    ax.set_ylim(bottom=-1)
    ax.legend(fontsize=6.5, loc="upper left")


def _confusion(ax, model: dict, kinds: list[str], title: str) -> None:
    conf = model["confusion"]
    cols = conf["labels"]
    m = np.array([[conf["matrix"][a][f] for f in cols] for a in kinds], float)
    ax.imshow(m / np.maximum(m.sum(1, keepdims=True), 1), cmap="Blues", vmin=0, vmax=1)
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            ax.text(j, i, f"{int(m[i, j])}", ha="center", va="center", fontsize=8)
    ax.set_xticks(range(len(cols)), cols, rotation=30, fontsize=7)
    ax.set_yticks(range(len(kinds)), kinds, fontsize=7)
    ax.set_xlabel("kind found in the generated flow")
    ax.set_ylabel("kind asked")
    ax.set_title(f"{title}: accuracy {conf['accuracy']:.2f} (asked >= 5)", fontsize=9)


def plot(results: dict, path: pathlib.Path) -> None:
    """Top: measured against asked per action, for the three models. Bottom: their confusion matrices."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = list(results["actions"])
    names = [n for n in TITLES if n in results["models"]]
    fig, axes = plt.subplots(2, len(names), figsize=(4.6 * len(names), 8.2), squeeze=False)
    for col, name in enumerate(names):
        model = results["models"][name]
        _fidelity(axes[0, col], model, results["intensities"], kinds, TITLES[name])
        _confusion(axes[1, col], model, kinds, TITLES[name].split(" the ")[-1] if name != "full" else "full")
    fig.suptitle(f"Action and intensity, {results['resolution']}x{results['resolution']}x{results['num_frames']}, "
                 f"trained from scratch on a CPU ({results['train_steps']} steps)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _grid(clips: dict, photo: str, kinds: list[str], intensities: list[float], seed: int, frame: int,
          scale: int, pad: int = 2) -> np.ndarray:
    """One frame of every (action, intensity) clip, tiled: (rows * (s + pad), cols * (s + pad), 3)."""
    s = next(iter(clips.values())).shape[1] * scale
    out = np.full((len(kinds) * (s + pad), len(intensities) * (s + pad), 3), 255, np.uint8)
    for i, kind in enumerate(kinds):
        for j, v in enumerate(intensities):
            f = clips[(photo, kind, float(v), seed)][frame]
            out[i * (s + pad):i * (s + pad) + s, j * (s + pad):j * (s + pad) + s] = f.repeat(scale, 0).repeat(scale, 1)
    return out


def grid_pictures(clips: dict, refs: dict, actions: dict, intensities: list[float], seed: int,
                  prefix: pathlib.Path, scale: int = 3) -> None:
    """PREFIX.gif: the grid of one photo per row block, animated; PREFIX_frames.png: first, middle and last frame
    of each cell side by side, with row and column labels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    kinds = list(actions)
    num_frames = next(iter(clips.values())).shape[0]
    frames = []
    for t in range(num_frames):
        blocks = [_grid(clips, photo, kinds, intensities, seed, t, scale) for photo in refs]
        frames.append(Image.fromarray(np.concatenate(blocks, 0)))
    frames[0].save(prefix.with_suffix(".gif"), save_all=True, append_images=frames[1:], duration=250, loop=0)

    picks = (0, num_frames // 2, num_frames - 1)
    photo = next(iter(refs))
    fig, axes = plt.subplots(len(kinds), len(intensities), figsize=(2.3 * len(intensities), 1.05 * len(kinds) + 0.6),
                             squeeze=False)
    for i, kind in enumerate(kinds):
        for j, v in enumerate(intensities):
            clip = clips[(photo, kind, float(v), seed)]
            strip = np.concatenate([np.pad(clip[t], ((0, 0), (0, 1), (0, 0)), constant_values=255) for t in picks], 1)
            ax = axes[i, j]
            ax.imshow(strip, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(f"intensity {v:g}", fontsize=8)
            if j == 0:
                ax.set_ylabel(actions[kind].replace("moving ", "moving\n"), fontsize=7)
    fig.suptitle(f"{photo}, seed {seed}: frames {', '.join(str(t + 1) for t in picks)} of {num_frames}", fontsize=9)
    fig.tight_layout()
    fig.savefig(prefix.parent / f"{prefix.name}_frames.png", dpi=100)
    plt.close(fig)
