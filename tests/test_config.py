"""The dataclass config loader: files, --set overrides, and errors that say how to fix them."""

import dataclasses

import pytest

from human_motion.config import ConfigError, load_config, packaged_config, parse_override, to_dict
from human_motion.engine.config import BuildConfig


def test_packaged_build_yaml_lists_the_defaults():
    from_file = to_dict(load_config(BuildConfig, packaged_config("build")))
    defaults = to_dict(BuildConfig(sources={"demo": {}}))
    defaults["sources"] = from_file["sources"]
    assert from_file == defaults


def test_overrides_parse_as_yaml_and_reach_nested_sections(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[decode]\nfps = 2.0\n[sources.folder]\nroot = "videos"\n')
    cfg = load_config(BuildConfig, path, ["decode.size_px=256", "sources.folder.options.images=false",
                                          "select.min_id_cos={dlib: 0.9}"])
    assert cfg.decode.fps == 2.0 and cfg.decode.size_px == 256
    assert cfg.sources["folder"].root == "videos" and cfg.sources["folder"].options == {"images": False}
    assert cfg.select.min_id_cos == {"dlib": 0.9}
    assert dataclasses.is_dataclass(cfg.sources["folder"])


@pytest.mark.parametrize("override, message", [
    ("decode.fsp=2", "unknown config key decode.'fsp'; valid keys in decode:"),
    ("decode.fps", "expected key=value"),
    ("decode.num_frames=1", "num_frames >= 2"),
    ("sink.mode=append", "sink.mode: must be one of"),
    ("decode.fps.x=1", "decode.fps: expected float"),
])
def test_bad_overrides_raise_config_errors(override, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
        load_config(BuildConfig, None, [override])


def test_parse_override_types():
    assert parse_override("a.b=3") == (["a", "b"], 3)
    assert parse_override("a=[1, 2]") == (["a"], [1, 2])
    assert parse_override("a=null") == (["a"], None)
