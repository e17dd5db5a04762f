"""``hm stats`` pictures: PNG charts (``--plots``) and the contact sheet (``--contact-sheet``), sample frames ordered
by intensity with the action phrase under each. The numbers themselves come from ``stats.py``.
"""

from __future__ import annotations

import math
import os
import sys
import tarfile

import fsspec
import numpy as np
import pandas as pd

from human_motion.dataset.tables import BuildTables, StatsConfig


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def write_plots(build: BuildTables, stats: dict, out_dir: str) -> list[str]:
    """PNG charts: intensity.png, actions.png, faces.png, scores.png, rejects.png, timings.png. Returns the paths
    written."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    os.makedirs(out_dir, exist_ok=True)
    idx, written = build.index, []

    def save(fig, name):
        path = os.path.join(out_dir, name)
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)

    it = stats["intensity"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4.5), gridspec_kw={"width_ratios": [3, 2]})
    x = np.arange(len(it["bins"]))
    bottom = np.zeros(len(x))
    for source, v in stats["by_source"].items():
        ax1.bar(x, v["intensity_hist"], bottom=bottom, label=f"{source} ({v['samples']})")
        bottom += np.asarray(v["intensity_hist"])
    ax1.set_xticks(x, it["bins"], rotation=60, fontsize=7)
    ax1.set(xlabel="motion intensity (px/step at size_px, fps)", ylabel="samples",
            title="Intensity histogram by source")
    ax1.legend(fontsize=8)
    ax1.yaxis.set_major_locator(MaxNLocator(integer=True))
    sources = list(stats["by_source"])
    video = idx[~idx["static"].fillna(False).astype(bool)]
    ax2.boxplot([video.loc[video["source"] == s, "intensity"].dropna().to_numpy() for s in sources], vert=False,
                flierprops={"markersize": 2})
    ax2.set_yticks(range(1, len(sources) + 1), sources)
    ax2.set(xlabel="motion intensity", title="Intensity per source (video samples; static ones are 0)")
    save(fig, "intensity.png")

    top = stats["actions"]["top"][::-1]
    fig, ax = plt.subplots(figsize=(9, max(2.5, 0.3 * len(top) + 1)))
    ax.barh([a or "(empty)" for a, _ in top], [c for _, c in top], color="tab:green")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(xlabel="samples", title=f"Top action phrases ({stats['actions']['distinct']} distinct)")
    save(fig, "actions.png")

    fig, axes = plt.subplots(1, 4, figsize=(16, 3.8))
    for ax, col, label in zip(axes, ("face_area_frac", "face_score", "id_min_cos"),
                              ("face area / frame area", "detector confidence", "min identity cosine")):
        ax.hist(pd.to_numeric(idx[col], errors="coerce").dropna(), bins=30, color="tab:blue")
        ax.set(xlabel=label, ylabel="samples", title=col)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    axes[3].hist(idx["description"].fillna("").str.count(r"\S+"), bins=30, color="tab:purple")
    axes[3].set(xlabel="words", ylabel="samples", title="description length")
    axes[3].yaxis.set_major_locator(MaxNLocator(integer=True))
    save(fig, "faces.png")

    write_score_plot(idx, stats.get("scores", {}), save)

    rows = stats["rejects"]["by_stage_reason"][::-1]
    fig, ax = plt.subplots(figsize=(9, max(2.5, 0.35 * len(rows) + 1)))
    ax.barh([f"{s}: {r}" for s, r, _ in rows] or ["(none)"], [n for *_, n in rows] or [0], color="tab:red")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(xlabel="rejected clips/windows", title=f"Rejections by stage and reason ({stats['rejects']['total']})")
    save(fig, "rejects.png")

    t = stats["timings"]["stage_seconds"]
    fig, ax = plt.subplots(figsize=(8, 3.5))
    bars = ax.bar(list(t) or ["(none)"], list(t.values()) or [0], color="tab:orange")
    ax.bar_label(bars, fmt="%.2f s", fontsize=8)
    ax.set(ylabel="seconds (summed over workers)", title=f"Build time by stage ({stats['samples']} samples)")
    save(fig, "timings.png")
    return written


def write_score_plot(idx: pd.DataFrame, scores: dict, save) -> None:
    """scores.png: a histogram of every score column of the kept samples, with the threshold select applied as a
    dashed red line (where it is one number)."""
    if not scores:
        return
    plt = _pyplot()
    cols = 5
    rows = math.ceil(len(scores) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False)
    for ax in axes.flat[len(scores):]:
        ax.axis("off")
    for ax, (name, s) in zip(axes.flat, scores.items()):
        ax.hist(pd.to_numeric(idx[name], errors="coerce").dropna(), bins=30, color="tab:gray")
        limit = (s.get("threshold") or {}).get("value")
        if isinstance(limit, (int, float)) and not isinstance(limit, bool):
            ax.axvline(limit, color="tab:red", linestyle="--", label=s["threshold"]["setting"])
            ax.legend(fontsize=6)
        ax.set_title(name, fontsize=9)
        ax.tick_params(labelsize=7)
    fig.suptitle("Scores of the kept samples (dashed: the threshold select applied)", fontsize=10)
    save(fig, "scores.png")


# ------------------------------------------------------------------------------------------------- contact sheet
def pick_sheet_samples(index: pd.DataFrame, n: int) -> pd.DataFrame:
    """``n`` samples spread evenly over the intensity ranking (video samples; static ones only when there are no
    videos), lowest first."""
    static = index["static"].fillna(False).astype(bool)
    pool = index[~static] if (~static).any() else index
    pool = pool.sort_values(["intensity", "key"], kind="stable").reset_index(drop=True)
    if len(pool) <= n:
        return pool
    return pool.iloc[np.unique(np.linspace(0, len(pool) - 1, n).round().astype(int))].reset_index(drop=True)


def read_members(fs, tar_path: str, wanted: dict[str, set[str]]) -> dict[str, dict[str, bytes]]:
    """The wanted ``{key: {ext}}`` members of one tar, reading only their bytes (headers of the others are skipped)."""
    found: dict[str, dict[str, bytes]] = {}
    left = sum(len(v) for v in wanted.values())
    with fs.open(tar_path, "rb") as f, tarfile.open(fileobj=f, mode="r:") as tar:
        for member in tar:
            key, _, ext = member.name.rsplit("/", 1)[-1].partition(".")
            if member.isfile() and ext in wanted.get(key, ()):
                found.setdefault(key, {})[ext] = tar.extractfile(member).read()
                left -= 1
                if left == 0:
                    break
    return found


def sample_strip(blobs: dict[str, bytes], cfg: StatsConfig) -> np.ndarray:
    """(tile, tile * (frames + 1), 3) uint8: evenly spaced frames and a motion tile (mean absolute difference of
    consecutive frames, fixed gain, so a still clip is dark and a moving one bright)."""
    import cv2

    from human_motion.media import decode_jpg, decode_mp4_bytes

    frames = decode_mp4_bytes(blobs["mp4"]) if "mp4" in blobs else decode_jpg(blobs["jpg"])[None]
    pick = np.unique(np.linspace(0, len(frames) - 1, cfg.sheet_frames).round().astype(int))
    tile = cfg.sheet_tile_px
    tiles = [cv2.resize(frames[i], (tile, tile), interpolation=cv2.INTER_AREA) for i in pick]
    tiles += [tiles[-1]] * (cfg.sheet_frames - len(tiles))
    gray = frames.astype(np.float32).mean(axis=-1)  # (t, h, w)
    diff = np.abs(np.diff(gray, axis=0)).mean(axis=0) if len(gray) > 1 else np.zeros(gray.shape[1:], np.float32)
    motion = np.clip(diff * cfg.motion_gain, 0, 255).astype(np.uint8)
    motion = cv2.applyColorMap(cv2.resize(motion, (tile, tile), interpolation=cv2.INTER_AREA), cv2.COLORMAP_INFERNO)
    tiles.append(cv2.cvtColor(motion, cv2.COLOR_BGR2RGB))
    return np.concatenate(tiles, axis=1)


def write_contact_sheet(build: BuildTables, path: str, cfg: StatsConfig = StatsConfig()) -> list[str]:
    """A PNG grid of samples ordered by intensity, each a strip of frames plus a motion tile, with the intensity and
    action phrase under it. Returns the keys shown (a sample that cannot be read shows as a grey strip)."""
    plt = _pyplot()
    picked = pick_sheet_samples(build.index, cfg.sheet_samples)
    fs, root = fsspec.core.url_to_fs(build.root)
    blobs: dict[str, dict[str, bytes]] = {}
    problems: dict[str, str] = {}
    for shard, group in picked.groupby("shard"):
        try:
            blobs.update(read_members(fs, f"{root.rstrip('/')}/{shard}.tar", {k: {"mp4", "jpg"} for k in group["key"]}))
        except (OSError, tarfile.TarError) as e:
            problems.update({k: f"shard {shard}: {e}" for k in group["key"]})
    tile, cols = cfg.sheet_tile_px, cfg.sheet_columns
    rows = max(1, math.ceil(len(picked) / cols))
    strip_w = tile * (cfg.sheet_frames + 1)
    text_px, top_px, margin_px = 48, 34, 12  # caption under each strip, title on top (figure pixels at dpi 100)
    width_px = cols * strip_w + (cols - 1) * 24 + 2 * margin_px
    height_px = rows * (tile + text_px) + top_px
    fig, axes = plt.subplots(rows, cols, figsize=(width_px / 100, height_px / 100), squeeze=False)
    fig.subplots_adjust(left=margin_px / width_px, right=1 - margin_px / width_px, top=1 - top_px / height_px,
                        bottom=text_px / height_px, hspace=text_px / tile, wspace=24 / strip_w)
    for ax in axes.flat:
        ax.axis("off")
    for i, row in picked.iterrows():
        ax = axes.flat[i]
        try:
            strip = sample_strip(blobs[row["key"]], cfg)
        except Exception as e:  # noqa: BLE001 - a bad sample is shown as such, never stops the sheet
            strip = np.full((tile, strip_w, 3), 96, np.uint8)
            problems.setdefault(row["key"], f"{type(e).__name__}: {e}")
        ax.imshow(strip)
        ax.set_title(f"intensity {row['intensity']:.1f}  |  {row['action']}", fontsize=9, y=-14 / tile, pad=0,
                     va="top")
        ax.text(0.0, -34 / tile, row["key"] + ("  (UNREADABLE)" if row["key"] in problems else ""), fontsize=6,
                color="dimgray", transform=ax.transAxes, va="top")
    fig.text(0.5, 1 - 12 / height_px, f"{build.root}: {len(picked)} samples by motion intensity, lowest first "
             "(left to right, then down); each: frames first ... last | motion = mean |frame difference|",
             ha="center", va="center", fontsize=9)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    for key, why in problems.items():
        print(f"hm stats: contact sheet: {key}: {why}", file=sys.stderr)
    return picked["key"].tolist()


# ---------------------------------------------------------------------------------------------------------- cli
