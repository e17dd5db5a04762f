"""The scores of issue 27 (``cuts``, ``face_fill``, and ``text_frac`` now filtered by default) are index columns:
``hm select`` re-applies their thresholds on a finished build without a model run, and ``hm stats`` shows their
distributions with the threshold the build applied."""

from __future__ import annotations

import json
import re

import pandas as pd
import pyarrow as pa
import pytest

from human_motion.cli import main
from human_motion.config import ConfigError
from human_motion.dataset.subset import apply_thresholds
from human_motion.schema import INDEX_SCHEMA, SCORE_COLUMNS
from human_motion.stages.decode import DecodeConfig
from human_motion.stages.select import SelectConfig


def test_the_new_scores_are_index_columns():
    for name in ("cuts", "face_fill", "text_frac"):
        assert name in SCORE_COLUMNS and INDEX_SCHEMA.field(name).type == pa.float64()


def test_select_applies_the_new_thresholds_to_an_index():
    table = pa.table({"key": ["a", "b", "c", "d"], "cuts": [0.0, 1.0, 0.0, 0.0], "face_fill": [0.5, 0.5, 0.1, 0.5],
                      "text_frac": [0.0, 0.0, 0.0, 0.05]})
    keep, reasons = apply_thresholds(table, SelectConfig())
    assert keep.tolist() == [True, False, False, False]
    assert reasons == {"shot_cut": 1, "low_face_fill": 1, "text_overlay": 1}
    keep, _ = apply_thresholds(table, SelectConfig(max_cuts=1, min_face_fill=0.0, max_text_frac=1.0))
    assert keep.all()


def test_hm_select_and_hm_stats_on_a_build(demo_build, tmp_path, capsys):
    index = pd.read_parquet(demo_build / "index.parquet")
    assert index[["cuts", "face_fill", "text_frac"]].notna().all().all()
    # A tighter face fill than the build's 0.2 leaves out the panned windows (their crop holds the whole pan).
    assert main(["select", str(demo_build), "--set", "select.min_face_fill=0.5", "--no-balance",
                 "--out", str(tmp_path / "keep.txt")]) == 0
    dropped = int((index["face_fill"] < 0.5).sum())
    assert 0 < dropped < len(index)
    assert f"thresholds leave out {dropped} of {len(index)} samples: low_face_fill {dropped}" in capsys.readouterr().out
    assert len((tmp_path / "keep.txt").read_text().split()) == len(index) - dropped

    assert main(["stats", str(demo_build), "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)["scores"]
    assert scores["cuts"]["threshold"] == {"setting": "select.max_cuts", "value": 0}
    assert scores["face_fill"]["min"] == index["face_fill"].min() and scores["face_fill"]["count"] == len(index)
    assert scores["text_frac"]["threshold"]["value"] == SelectConfig().max_text_frac
    assert main(["stats", str(demo_build)]) == 0
    report = capsys.readouterr().out
    assert "select.min_face_fill=0.2" in report and "select.max_cuts=0" in report


@pytest.mark.parametrize(("section", "values", "words"), [
    ("select", {"max_cuts": -1}, "select.max_cuts must be >= 0"),
    ("select", {"min_face_fill": 1.0}, "select.min_face_fill must be in [0, 1)"),
    ("decode", {"cut_threshold": 0}, "decode.cut_threshold must be > 0"),
    ("decode", {"cut_ratio": -1}, "cut_ratio >= 0")])
def test_settings_that_cannot_work_are_one_line_refusals(section, values, words):
    make = SelectConfig if section == "select" else DecodeConfig
    with pytest.raises(ConfigError, match=re.escape(words)) as e:
        make(**values)
    assert "\n" not in str(e.value)
