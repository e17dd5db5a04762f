"""hm stats on shards made by hm build's code (the session's demo build): the numbers printed with --json are
recomputed here straight from index.parquet, rejects.parquet and the _stats.json files; the PNGs are real images."""

from __future__ import annotations

import json
import pathlib
import shutil
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from human_motion.cli import main
from human_motion.dataset.stats import BuildTables, StatsConfig, compute_stats, format_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def stats_json(args: list[str], capsys) -> dict:
    assert main(["stats", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def png_size(path: pathlib.Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, f"{path} is not a PNG"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")  # IHDR width, height


def test_json_numbers_match_the_index(demo_build, capsys):
    stats = stats_json([str(demo_build)], capsys)
    index = pd.read_parquet(demo_build / "index.parquet")
    rejects = pd.read_parquet(demo_build / "rejects.parquet")
    assert len(index) > 5 and index["static"].any() and (~index["static"]).any() and len(rejects) > 0

    assert stats["samples"] == len(index)
    assert stats["static_samples"] == int(index["static"].sum())
    assert stats["video_samples"] == int((~index["static"]).sum())
    assert stats["shards"] == len(list(demo_build.glob("*_stats.json")))
    assert {s: v["samples"] for s, v in stats["by_source"].items()} == dict(Counter(index["source"]))

    values = index["intensity"].to_numpy()
    video = index.loc[~index["static"], "intensity"].to_numpy()
    for name, q in (("min", 0), ("p05", 0.05), ("p25", 0.25), ("p50", 0.5), ("p75", 0.75), ("p95", 0.95), ("max", 1)):
        assert stats["intensity"]["all"][name] == pytest.approx(np.quantile(values, q)), name
        assert stats["intensity"]["video"][name] == pytest.approx(np.quantile(video, q)), name
    assert stats["intensity"]["all"]["mean"] == pytest.approx(values.mean())
    edges = np.append(np.arange(0, 21, 1.0), np.inf)
    assert stats["intensity"]["hist"] == np.histogram(values, edges)[0].tolist()
    assert stats["intensity"]["bins"][0] == "0-1" and stats["intensity"]["bins"][-1] == "20+"
    for source, group in index.groupby("source"):
        assert stats["by_source"][source]["intensity_hist"] == np.histogram(group["intensity"], edges)[0].tolist()
        assert stats["by_source"][source]["intensity"]["p50"] == pytest.approx(np.median(group["intensity"]))

    actions = Counter(index["action"])
    assert stats["actions"]["distinct"] == len(actions)
    assert {a: c for a, c in stats["actions"]["top"]} == dict(actions.most_common(20))
    words = [len(d.split()) for d in index["description"]]
    assert stats["description_words"]["max"] == max(words)
    assert stats["description_words"]["mean"] == pytest.approx(np.mean(words))
    assert stats["description_chars"]["p50"] == pytest.approx(np.median([len(d) for d in index["description"]]))
    for col in ("face_area_frac", "face_score", "id_min_cos"):
        assert stats[col]["p50"] == pytest.approx(np.median(index[col])), col
        assert stats[col]["min"] == pytest.approx(index[col].min()), col

    assert stats["rejects"]["total"] == len(rejects)
    assert stats["rejects"]["by_stage"] == dict(Counter(rejects["stage"]))
    assert stats["rejects"]["by_reason"] == dict(Counter(rejects["reason"]))
    assert sum(n for *_, n in stats["rejects"]["by_stage_reason"]) == len(rejects)

    seconds: Counter = Counter()
    for path in demo_build.glob("*_stats.json"):
        seconds.update(json.loads(path.read_text())["stage_seconds"])
    assert stats["timings"]["from"] == "shard_stats"
    assert stats["timings"]["stage_seconds"] == pytest.approx(dict(seconds), abs=1e-3)
    assert stats["timings"]["stage_seconds_total"] == pytest.approx(sum(seconds.values()), abs=1e-3)
    assert stats["notes"] == []  # manifest, _stats.json and index agree


def test_terminal_table(demo_build, capsys):
    assert main(["stats", str(demo_build)]) == 0
    out = capsys.readouterr().out
    index = pd.read_parquet(demo_build / "index.parquet")
    for heading in ("By source", "Motion intensity", "Intensity histogram", "Action phrases", "face_area_frac",
                    "Rejections", "Build timings"):
        assert heading in out
    assert f"{len(index)} samples" in out
    assert index["action"].value_counts().index[0] in out


def test_plots_and_contact_sheet_are_pngs(demo_build, tmp_path, capsys):
    sheet = tmp_path / "sheet.png"
    stats = stats_json([str(demo_build), "--plots", str(tmp_path / "plots"), "--contact-sheet", str(sheet),
                        "--sheet-samples", "6"], capsys)
    names = sorted(p.name for p in (tmp_path / "plots").glob("*.png"))
    assert names == ["actions.png", "faces.png", "intensity.png", "rejects.png", "scores.png", "timings.png"]
    for path in (tmp_path / "plots").glob("*.png"):
        w, h = png_size(path)
        assert w >= 400 and h >= 150 and path.stat().st_size > 5_000, path
    w, h = png_size(sheet)
    assert w >= 1000 and h >= 3 * 128 and sheet.stat().st_size > 50_000

    # The sheet shows video samples spread over the intensity ranking, lowest first.
    index = pd.read_parquet(demo_build / "index.parquet").set_index("key")
    keys = stats["contact_sheet"]["keys"]
    assert len(keys) == 6 and not index.loc[keys, "static"].any()
    shown = index.loc[keys, "intensity"].to_numpy()
    assert (np.diff(shown) >= 0).all()
    video = index.loc[~index["static"], "intensity"]
    assert shown[0] == video.min() and shown[-1] == video.max()

    import matplotlib.image

    pixels = matplotlib.image.imread(sheet)
    assert pixels.shape[:2] == (h, w) and pixels[..., :3].std() > 0.1  # real frames, not a blank canvas


def test_contact_sheet_survives_a_broken_shard(demo_build, tmp_path, capsys):
    root = tmp_path / "shards"
    shutil.copytree(demo_build, root)
    for tar in root.glob("*.tar"):
        tar.write_bytes(tar.read_bytes()[:2000])
    assert main(["stats", str(root), "--contact-sheet", str(tmp_path / "s.png"), "--sheet-samples", "3"]) == 0
    assert "contact sheet" in capsys.readouterr().err
    png_size(tmp_path / "s.png")


def test_without_index_parquet_reads_the_shard_parquets(demo_build, tmp_path, capsys):
    root = tmp_path / "shards"
    shutil.copytree(demo_build, root)
    (root / "index.parquet").unlink()
    (root / "rejects.parquet").unlink()
    stats = stats_json([str(root)], capsys)
    assert stats["samples"] == len(pd.read_parquet(demo_build / "index.parquet"))
    assert stats["rejects"]["total"] == len(pd.read_parquet(demo_build / "rejects.parquet"))
    assert any("index.parquet missing" in n for n in stats["notes"])


def test_an_unreadable_index_parquet_reads_the_shard_parquets(demo_build, tmp_path, capsys):
    root = tmp_path / "shards"
    shutil.copytree(demo_build, root)
    (root / "index.parquet").write_bytes(b"x")  # cut short by a full disk, or edited
    stats = stats_json([str(root)], capsys)
    assert stats["samples"] == len(pd.read_parquet(demo_build / "index.parquet"))
    assert any(n.startswith("index.parquet unreadable (") for n in stats["notes"])


def test_missing_folder_is_an_error(tmp_path, capsys):
    assert main(["stats", str(tmp_path / "nope")]) == 2
    assert "no such folder" in capsys.readouterr().err
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "a.jpg").write_bytes(b"x")
    assert main(["stats", str(tmp_path / "photos")]) == 2  # a folder, but not a build
    err = capsys.readouterr().err.strip()
    assert "not a build folder" in err and "hm build" in err and len(err.splitlines()) == 1


def test_a_build_with_no_shard_finished_yet_reports_zero(tmp_path, capsys):
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "_build.json").write_text("{}")  # started: fingerprint written, nothing finished
    stats = stats_json([str(tmp_path / "b")], capsys)
    assert stats["samples"] == 0 and any("no shard finished yet" in n for n in stats["notes"])


def test_stats_of_100k_rows_count_every_row():
    """A corpus-sized index in memory: every row counted where it belongs. (How long this takes is a benchmark's
    claim, benchmarks/scale.py, not a test's: a time bound depends on what else the machine runs.)"""
    rng = np.random.default_rng(0)
    n = 100_000
    sources = np.array(["celebv-hq", "celebv-text", "vfhq", "aahq"])
    source = sources[rng.integers(0, 4, n)]
    static = source == "aahq"
    actions = np.array(["smiling", "talking", "turning head to the left", "nodding", "keeping still"])
    index = pd.DataFrame({
        "key": [f"k{i:06d}" for i in range(n)], "shard": [f"{i // 16:06d}" for i in range(n)], "source": source,
        "clip_id": [f"c{i // 2}" for i in range(n)], "static": static,
        "intensity": np.where(static, 0.0, rng.gamma(2.0, 4.0, n)), "action": actions[rng.integers(0, 5, n)],
        "description": np.where(static, "A portrait photo.", "A close-up video of a person smiling."),
        "face_area_frac": rng.uniform(0.05, 0.4, n), "face_score": rng.uniform(0.5, 1, n),
        "id_min_cos": rng.uniform(0.8, 1, n), "flow_backend": "raft", "embedding_kind": "arcface",
        "caption_backend": "vlm", "size_px": 512,
    })
    rejects = pd.DataFrame({"source": "vfhq", "clip_id": "x", "window": -1, "media_path": "", "stage": "faces",
                            "reason": rng.choice(["no_face", "small_face"], 5000), "detail": "", "shard": "000000"})
    build = BuildTables("synthetic", index, rejects, {}, [{"stage_seconds": {"faces": 1.0}, "samples": 16}] * 6250)
    stats = compute_stats(build, StatsConfig())
    text = format_report(stats)
    assert stats["samples"] == n and stats["static_samples"] == int(static.sum())
    assert sum(stats["intensity"]["hist"]) == n
    assert {k: v["samples"] for k, v in stats["by_source"].items()} == index["source"].value_counts().to_dict()
    assert dict(stats["actions"]["top"]) == index["action"].value_counts().to_dict()
    assert stats["intensity"]["video"]["p50"] == pytest.approx(index["intensity"][~static].median())
    assert stats["rejects"]["by_reason"] == rejects["reason"].value_counts().to_dict()
    assert stats["timings"]["stage_seconds"] == {"faces": pytest.approx(6250.0)}
    assert "celebv-hq" in text and stats["notes"] == []
