"""hm select: balanced subsets and sampling weights over intensity bins, from an index without a rebuild."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from human_motion.cli import main
from human_motion.config import ConfigError
from human_motion.dataset.subset import assign_bins, balanced_weights, parse_bins, read_index, select_balanced


def write_index(path, intensities, static=None):
    n = len(intensities)
    table = pa.table({"key": [f"s__{i:04d}__w000" for i in range(n)], "shard": ["000000"] * n,
                      "source": ["folder"] * n, "static": static or [False] * n,
                      "intensity": pa.array(intensities, pa.float64())})
    pq.write_table(table, path)
    return table


def test_parse_bins():
    assert parse_bins("0:20:5").tolist() == [0, 5, 10, 15, 20]
    assert parse_bins("0:20:6").tolist() == [0, 6, 12, 18, 20]
    assert parse_bins("0,2,5,10,20").tolist() == [0, 2, 5, 10, 20]
    for bad in ("20:0:5", "0:20:0", "5", "0,5,5", "a:b:c"):
        with pytest.raises(ConfigError, match="--bins"):
            parse_bins(bad)


def test_assign_bins_edges_and_outside():
    edges = parse_bins("0:20:5")
    x = np.array([0.0, 4.99, 5.0, 19.9, 20.0, 25.0, -1.0, np.nan])
    assert assign_bins(x, edges).tolist() == [0, 0, 1, 3, 3, 3, 0, -1]
    assert assign_bins(x, edges, "drop").tolist() == [0, 0, 1, 3, 3, -1, -1, -1]


def test_subset_is_balanced_repeatable_and_seeded(tmp_path):
    rng = np.random.default_rng(0)
    # Skewed like real data: mostly low intensities.
    x = np.concatenate([rng.uniform(0, 5, 60), rng.uniform(5, 10, 25), rng.uniform(10, 15, 8), rng.uniform(15, 20, 5)])
    table = write_index(tmp_path / "index.parquet", x.tolist())
    edges = parse_bins("0:20:5")
    a = select_balanced(table, edges)
    assert np.bincount(a.column("bin").to_numpy(), minlength=4).tolist() == [5, 5, 5, 5]
    assert a.column("key").to_pylist() == select_balanced(table, edges).column("key").to_pylist()
    assert set(a.column("key").to_pylist()) != set(select_balanced(table, edges, seed=1).column("key").to_pylist())
    capped = select_balanced(table, edges, per_bin=10)
    assert np.bincount(capped.column("bin").to_numpy(), minlength=4).tolist() == [10, 10, 8, 5]


def test_weights_equalise_bins():
    bins = np.array([0] * 6 + [1] * 3 + [2] * 1 + [-1])
    w = balanced_weights(bins, 4)
    per_bin = [w[bins == b].sum() for b in range(3)]
    assert per_bin == pytest.approx([per_bin[0]] * 3)
    assert w[bins >= 0].mean() == pytest.approx(1.0) and w[-1] == 0.0


def test_cli_on_a_build_folder_writes_keys_and_weights(tmp_path, capsys):
    write_index(tmp_path / "index.parquet", [0.0, 0.0, 0.0, 1.0, 6.0, 7.0, 12.0, 18.0, 30.0],
                static=[True, True, False, False, False, False, False, False, False])
    assert main(["select", str(tmp_path), "--out", str(tmp_path / "keys.txt")]) == 0
    keys = (tmp_path / "keys.txt").read_text().split()
    assert len(keys) == 4  # the smallest non-empty bin ([10, 15): one sample) sets the size of every bin
    assert "[15, 20]" in capsys.readouterr().out

    assert main(["select", str(tmp_path / "index.parquet"), "--out", str(tmp_path / "w.parquet"), "--weights",
                 "--bins", "0,5,10,20", "--outside", "drop", "--exclude-static"]) == 0
    w = pq.read_table(tmp_path / "w.parquet").to_pydict()
    assert len(w["key"]) == 9 and w["weight"][-1] == 0.0 and w["weight"][0] == 0.0  # 30 dropped, static excluded
    # bins: [0,5): 2 (non-static 0.0 and 1.0), [5,10): 2, [10,20]: 2 -> every kept weight is 1
    assert [round(v, 6) for v in w["weight"][2:8]] == [1.0] * 6

    assert main(["select", str(tmp_path), "--out", str(tmp_path / "w.txt"), "--weights"]) == 0
    first = (tmp_path / "w.txt").read_text().splitlines()[0].split("\t")
    assert first[0] == "s__0000__w000" and float(first[1]) > 0


def test_shard_index_files_and_errors(tmp_path, capsys):
    shards = tmp_path / "shards"
    shards.mkdir()
    write_index(shards / "000000.parquet", [1.0, 6.0])
    write_index(shards / "000001.parquet", [11.0, 16.0])
    assert read_index(shards).num_rows == 4
    assert main(["select", str(tmp_path / "nope"), "--out", str(tmp_path / "k.txt")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["select", str(shards), "--out", str(tmp_path / "k.json")]) == 2
    pq.write_table(pa.table({"key": ["a"]}), tmp_path / "bad.parquet")
    with pytest.raises(ConfigError, match="intensity"):
        read_index(tmp_path / "bad.parquet")


def test_on_a_real_build(demo_build, tmp_path):
    """The demo build's index (intensities of known pans): a subset without re-running anything."""
    out = tmp_path / "subset.parquet"
    assert main(["select", str(demo_build), "--out", str(out), "--bins", "0:20:10"]) == 0
    subset = pq.read_table(out).to_pydict()
    index = pq.read_table(demo_build / "index.parquet").to_pydict()
    assert set(subset["key"]) <= set(index["key"]) and subset["key"]
    counts = np.bincount(subset["bin"], minlength=2)
    assert counts[counts > 0].min() == counts.max()


def test_tighter_thresholds_on_a_finished_build_need_no_model_run(demo_build, tmp_path, capsys):
    """The scores are index columns: hm select applies the build's own checks with a threshold tightened, and keeps
    exactly the samples whose scores pass it."""
    import pandas as pd

    index = pd.read_parquet(demo_build / "index.parquet")
    assert main(["select", str(demo_build), "--no-balance", "--out", str(tmp_path / "all.txt")]) == 0
    assert sorted((tmp_path / "all.txt").read_text().split()) == sorted(index.key)  # the build's own thresholds
    capsys.readouterr()
    limit = float(index.face_score.median())
    assert main(["select", str(demo_build), "--set", f"select.min_face_score={limit}", "--no-balance",
                 "--out", str(tmp_path / "kept.txt")]) == 0
    kept = sorted((tmp_path / "kept.txt").read_text().split())
    assert kept == sorted(index[index.face_score >= limit].key) and 0 < len(kept) < len(index)
    assert f"low_confidence {len(index) - len(kept)}" in capsys.readouterr().out
    assert main(["select", str(demo_build), "--set", "select.nonsense=1", "--out", str(tmp_path / "x.txt")]) == 2
    assert main(["select", str(demo_build), "--set", "decode.fps=1", "--out", str(tmp_path / "x.txt")]) == 2
