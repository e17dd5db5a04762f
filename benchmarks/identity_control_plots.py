"""Pictures of ``identity_control.py``: people as rows and asked intensities as columns (the full model's face
similarity and identity hits, a plot for the repository; the generated frames themselves, for the work folder), and
identity accuracy, face similarity and measured intensity against the asked intensity for every model."""

from __future__ import annotations

import pathlib

import numpy as np

LABELS = {"full": "full (L_id + L_R)", "no_id": "no ID insertion", "no_lid": "no L_id", "no_lr": "no L_R",
          "neither": "neither loss", "no_mcm": "full, module off"}


def _grid(ax, results: dict) -> None:
    """People (seen, then held out) as rows, intensities as columns: the full model's mean face similarity to the
    own reference; each cell says how many clips showed the right person (seen) or were nearer their own
    reference than every seen person (held out)."""
    rows = results["models"]["full"]["rows"]
    people = results["seen"] + results["held_out"]
    levels = sorted({r["asked"] for r in rows})
    sim = np.full((len(people), len(levels)), np.nan)
    ax.set_title("full model: face similarity to the own reference (dlib cosine);\n"
                 "k/n = clips showing that person (seen) or nearer it than any seen person (held out)", fontsize=8)
    for i, p in enumerate(people):
        for j, v in enumerate(levels):
            mine = [r for r in rows if r["person"] == p and r["asked"] == v and r["own_sim"] is not None]
            if not mine:
                continue
            sim[i, j] = np.mean([r["own_sim"] for r in mine])
            hits = sum((r["shown"] == p) if p in results["seen"] else (r["own_sim"] > r["nearest_seen_sim"])
                       for r in mine)
            ax.text(j, i, f"{sim[i, j]:.3f}\n{hits}/{len(mine)}", ha="center", va="center", fontsize=6.5)
    im = ax.imshow(sim, cmap="viridis", aspect="auto")
    ax.figure.colorbar(im, ax=ax, fraction=0.04)
    ax.set_xticks(range(len(levels)), [f"{v:g}" for v in levels], fontsize=7)
    ax.set_yticks(range(len(people)), [p + ("" if p in results["seen"] else " (held out)") for p in people],
                  fontsize=7)
    ax.set_xlabel("asked intensity (px per step at 512 px)", fontsize=8)


def _curves(ax, results: dict, key: str, ylabel: str) -> None:
    for name, model in results["models"].items():
        by_level = model["identity_seen"]["by_level"]
        xs = [float(v) for v in by_level]
        ax.plot(xs, [by_level[v][key] for v in by_level], marker="o", ms=3, label=LABELS.get(name, name))
    ax.set_xlabel("asked intensity", fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.legend(fontsize=6)


def _intensity(ax, results: dict) -> None:
    model = results["models"]["full"]
    rows = model["rows"]
    levels = sorted({r["asked"] for r in rows})
    ax.plot([0, max(levels)], [0, max(levels)], color="0.7", lw=1)
    for p in results["people"]:
        means = [np.mean([r["measured"] for r in rows if r["person"] == p and r["asked"] == v]) for v in levels]
        ax.plot(levels, means, lw=1, label=p + ("" if p in results["seen"] else " (held out)"))
    h = model["headline"]
    ax.set_title(f"full: measured vs asked per person; Spearman {h['intensity_spearman']:.3f}, "
                 f"action accuracy {h['action_accuracy']:.2f}", fontsize=8)
    ax.set_xlabel("asked intensity", fontsize=8)
    ax.set_ylabel("measured (DIS, px per step at 512)", fontsize=8)
    ax.legend(fontsize=5.5, ncol=2)


def plot(results: dict, path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(13, 8))
    _grid(fig.add_subplot(1, 2, 1), results)
    _curves(fig.add_subplot(3, 2, 2), results, "accuracy", "identity accuracy (seen)")
    _curves(fig.add_subplot(3, 2, 4), results, "face_similarity", "face similarity")
    _intensity(fig.add_subplot(3, 2, 6), results)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def frames_grid(clips: dict, refs: dict, people: list[str], held_out: list[str], path: pathlib.Path,
                action: str = "horizontal", scale: int = 3) -> None:
    """People as rows; the reference, then for each asked intensity the first and last frame of the clip of
    ``action`` (first seed), enlarged ``scale`` times."""
    import cv2

    levels = sorted({k[2] for k in clips if k[1] == action})
    seed = min(k[3] for k in clips)
    rows = []
    for p in people:
        frames = [clips[(p, action, v, seed)] for v in levels if (p, action, v, seed) in clips]
        if not frames:
            continue
        size = frames[0].shape[1]
        ref = cv2.resize(refs[p], (size, size), interpolation=cv2.INTER_AREA)
        gap = np.full((size, 2, 3), 255, np.uint8)
        cells = [ref, gap] + [x for f in frames for x in (f[0], f[-1], gap)]
        row = np.concatenate(cells, axis=1)
        if p in held_out:
            row[:2] = (255, 0, 0)  # a red line over the held-out people
        rows.append(row)
    grid = np.concatenate(rows, axis=0)
    grid = cv2.resize(grid, (grid.shape[1] * scale, grid.shape[0] * scale), interpolation=cv2.INTER_NEAREST)
    cv2.imwrite(str(path), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
