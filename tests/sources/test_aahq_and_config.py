"""aahq as static samples, and `hm build --sources celebv-hq,vfhq,aahq --config hm.toml` end to end."""

from __future__ import annotations

import json
import pathlib

from corpora import FAST_SETS, read_rejects, read_samples, write_face_image
from human_motion.cli import main
from human_motion.sources.config import SourceConfig
from human_motion.sources.aahq import AAHQSource


def write_aahq(root: pathlib.Path) -> None:
    write_face_image(root / "aligned" / "00001.png")
    write_face_image(root / "aligned" / "sub" / "00002.jpg")
    (root / "aligned" / "LICENSE.txt").write_text("licence")
    (root / "aligned" / "notes.docx").write_bytes(b"x")
    write_face_image(root / "raw" / "00001.png")  # not read: aligned/ is preferred


def test_aahq_specs(tmp_path):
    write_aahq(tmp_path)
    specs = {s.clip_id: s for s in AAHQSource("aahq", SourceConfig(root=str(tmp_path)), tmp_path).specs()}
    assert set(specs) == {"00001.png", "sub/00002.jpg", "notes.docx"}
    assert specs["00001.png"].static and specs["00001.png"].path.endswith("aligned/00001.png")
    assert specs["notes.docx"].reject_reason == "unsupported_file"
    raw = AAHQSource("aahq", SourceConfig(root=str(tmp_path), options={"subdir": "raw"}), tmp_path)
    assert [s.clip_id for s in raw.specs()] == ["00001.png"]


def test_cli_build_with_sources_from_config_file(tmp_path):
    """Roots, limits and sampling per source come from the --config file; --sources picks which run."""
    from test_celebv_hq import write_corpus as write_celebvhq
    from test_vfhq import write_corpus as write_vfhq

    write_celebvhq(tmp_path / "celebvhq")
    vfhq_names = write_vfhq(tmp_path / "vfhq")
    write_aahq(tmp_path / "aahq")
    (tmp_path / "hm.toml").write_text(f"""
[sources.celebv-hq]
root = "{tmp_path / 'celebvhq'}"
limit = 3

[sources.vfhq]
root = "{tmp_path / 'vfhq'}"
sample_fraction = 1.0

[sources.vfhq.options]
frames = "skip"

[sources.aahq]
root = "{tmp_path / 'aahq'}"
""")
    out = tmp_path / "shards"
    sets = [a for k, v in dict(FAST_SETS, **{"ray.address": "local", "ray.progress": False}).items()
            for a in ("--set", f"{k}={v}")]
    rc = main(["build", "--sources", "celebv-hq,vfhq", "--config", str(tmp_path / "hm.toml"), "--out", str(out),
               *sets])
    assert rc == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["config"]["sources"]) == {"celebv-hq", "vfhq"}  # aahq is in the file but not chosen
    rejects, samples = read_rejects(out), read_samples(out)
    clip_ids = set(rejects) | set(samples)
    assert len([c for c in clip_ids if c.startswith("Clip+") or c.startswith("Clip+bad")]) == len(vfhq_names)
    # limit = 3: the first three celebv-hq clips that can be built, in sorted order, and the rows the source rejected
    # on the way to them (recorded, not counted: a partial download lists many clips without media).
    assert {c for c in clip_ids if not c.startswith("Clip+")} == {
        "../../../etc/passwd", "ytAAAAAAAAA_0", "ytBBBBBBBBB_1", "ytBBBBBBBBB_10", "ytBBBBBBBBB_2", "ytBBBBBBBBB_3"}
    assert {c for c, r in rejects.items() if not c.startswith("Clip+")} >= {"../../../etc/passwd", "ytBBBBBBBBB_10",
                                                                          "ytBBBBBBBBB_2"}
    assert samples["ytAAAAAAAAA_0"]["action"] == "smiling and talking"
    assert rejects[vfhq_names["frames"]] == "missing_file"  # frames = "skip" from the file's options


def test_unknown_layout_option_is_a_config_error(tmp_path, capsys):
    (tmp_path / "celebvhq_info.json").write_text('{"clips": {}}')
    rc = main(["build", "--sources", f"celebv-hq={tmp_path}", "--set", "sources.celebv-hq.options.layout=zip",
               "--out", str(tmp_path / "o"), "--set", "ray.address=local"])
    assert rc == 2 and "layout must be one of" in capsys.readouterr().err


def test_aahq_build_gives_static_zero_intensity_samples(tmp_path):
    from corpora import fast_config
    from human_motion.engine.build import build

    write_aahq(tmp_path / "aahq")
    summary = build(fast_config({"aahq": {"root": str(tmp_path / "aahq")}}), str(tmp_path / "out"))
    samples = read_samples(tmp_path / "out")
    assert set(samples) == {"00001.png", "sub/00002.jpg"} and summary["rejects"] == 1
    for s in samples.values():
        assert s["static"] and s["intensity"] == 0.0
        assert "stylised artwork" in s["description"]


def test_folder_without_images_rows_each_image_and_limits_videos_only(tmp_path):
    """``images: false`` leaves the images out of the build, each with a row naming the option; ``limit`` counts
    only what the build reads."""
    from human_motion.sources import collect_specs

    root = tmp_path / "media"
    for name in ("a.mp4", "b.mp4", "c.mp4"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"x")
    write_face_image(root / "photos" / "p1.png")
    write_face_image(root / "photos" / "p2.jpg")
    specs = {s.clip_id: s for s in collect_specs(
        {"folder": SourceConfig(root=str(root), limit=2, options={"images": False})}, tmp_path)}
    assert set(specs) == {"a.mp4", "b.mp4", "photos/p1.png", "photos/p2.jpg"}
    assert specs["a.mp4"].reject_reason is None and not specs["a.mp4"].static
    assert specs["photos/p1.png"].reject_reason == "image_excluded"
    assert "sources.folder.options.images is false" in specs["photos/p2.jpg"].reject_detail
    with_images = {s.clip_id: s for s in collect_specs({"folder": SourceConfig(root=str(root))}, tmp_path)}
    assert with_images["photos/p1.png"].static and with_images["photos/p1.png"].reject_reason is None
