"""Every command refuses a path the system will not give it in one line (the path, what is wrong, what to do),
and bad numbers as configuration errors; errors that name no path are not hidden."""

from __future__ import annotations

import errno

import pytest

from human_motion import cli


@pytest.mark.parametrize("command", [
    ["stats", "{build}", "--plots", "{blocked}/plots"],
    ["select", "{build}", "--out", "{blocked}/keys.txt"],
    ["train", "{build}", "--config", "train_tiny", "--out", "{blocked}/run"],
])
def test_an_output_path_that_cannot_be_made_is_one_line(demo_build, tmp_path, capsys, command):
    blocked = tmp_path / "a_file"  # a folder on the way that is a file
    blocked.write_text("not a folder")
    args = [a.format(build=demo_build, blocked=blocked) for a in command]
    assert cli.main(args) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"hm {command[0]}: cannot use {blocked}") and "choose another path" in err


def test_stats_numbers_are_configuration_errors(demo_build, capsys):
    for bad in (["--sheet-samples", "0"], ["--top", "-1"]):
        assert cli.main(["stats", str(demo_build), *bad]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("hm stats: error: --sheet-samples must be >= 1 and --top >= 0") and "\n" not in err


def test_an_error_that_names_no_path_is_not_hidden(monkeypatch):
    def broken(args):
        raise OSError(errno.EIO, "input/output error")

    monkeypatch.setattr("human_motion.dataset.stats.run", broken)
    with pytest.raises(OSError, match="input/output error"):
        cli.main(["stats", "anything"])
