"""The dataclass config loader: files, --set overrides, and errors that say how to fix them."""

import dataclasses
import os

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
    ("decode.fsp=2", "unknown config key 'decode.fsp'; valid keys in decode:"),
    ("decode.fps", "expected key=value"),
    ("decode.num_frames=1", "num_frames >= 2"),
    ("sink.mode=append", "sink.mode: must be one of"),
    ("decode.fps.x=1", "decode.fps: expected float"),
    ("select.min_face_score=nan", "select.min_face_score: expected a finite number"),
    ("select.max_text_frac=.inf", "select.max_text_frac: expected a finite number"),
    ("select.min_id_cos={dlib: nan}", "expected a finite number"),
])
def test_bad_overrides_raise_config_errors(override, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
        load_config(BuildConfig, None, [override])


def test_parse_override_types():
    assert parse_override("a.b=3") == (["a", "b"], 3)
    assert parse_override("a=[1, 2]") == (["a"], [1, 2])
    assert parse_override("a=null") == (["a"], None)


def _hostile_config(tmp_path, name: str):
    """Config files a careless export or a hostile user could hand to --config."""
    path = tmp_path / name
    if name == "latin1.yaml":
        path.write_bytes("decode:\n  fps: 4.0  # r\xe9glage\n".encode("latin-1"))
    elif name == "deep.yaml":
        path.write_text("decode: " + "[" * 100_000 + "]" * 100_000 + "\n")
    elif name == "deep.toml":
        path.write_text("x = " + "[" * 100_000 + "]" * 100_000 + "\n")
    elif name == "huge_int.yaml":
        path.write_text("decode:\n  size_px: " + "9" * 5000 + "\n")
    elif name == "huge_int.toml":
        path.write_text("[decode]\nsize_px = " + "9" * 5000 + "\n")
    elif name == "laughs.yaml":  # 10 levels of 10 aliases: 10^10 values once expanded
        lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
        lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 10)]
        path.write_text("\n".join(lines) + "\n")
    elif name == "fifo.yaml":
        os.mkfifo(path)
    elif name == "dangling.yaml":
        path.symlink_to(tmp_path / "gone.yaml")
    elif name == "folder.yaml":
        path.mkdir()
    return path


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name, message", [
    ("latin1.yaml", "is not UTF-8 text (byte 0xe9 at offset"),
    ("deep.yaml", "nests too deeply"),
    ("deep.toml", "nests too deeply"),
    ("huge_int.yaml", "holds a value that cannot be read"),
    ("huge_int.toml", "holds a value that cannot be read"),
    ("laughs.yaml", "holds more than 100,000 values"),
    ("fifo.yaml", "is a FIFO (named pipe), not a regular file"),
    ("dangling.yaml", "is a link to"),
    ("folder.yaml", "is a directory, not a regular file"),
])
def test_hostile_config_files_are_one_line_errors(tmp_path, capsys, name, message):
    from human_motion.cli import main

    path = _hostile_config(tmp_path, name)
    with pytest.raises(ConfigError) as e:
        load_config(BuildConfig, path)
    assert message in str(e.value) and str(path) in str(e.value)
    code = main(["build", "--config", str(path), "--sources", "demo", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / "out").exists()


def test_hostile_set_values_are_refused_or_kept_as_text():
    assert parse_override("a=" + "9" * 5000)[1] == "9" * 5000  # YAML's int() limit: kept as text
    with pytest.raises(ConfigError, match="expected int"):
        load_config(BuildConfig, None, ["decode.size_px=" + "9" * 5000])
    with pytest.raises(ConfigError, match="nests too deeply"):
        parse_override("a=" + "[" * 50 + "]" * 50)
