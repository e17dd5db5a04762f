"""``data.keys_file``: the output of ``hm select`` read back for training, a subset of sample keys or per-sample
sampling weights, and how often one pass over the shards draws a sample of a given weight."""

from __future__ import annotations

import pathlib

import numpy as np

from human_motion.config import ConfigError


def read_selection(path: str) -> dict[str, float]:
    """Sample key -> sampling weight, from `hm select`'s output: a subset (.txt keys, or a `key` column of .parquet /
    .csv; every weight 1) or, written with ``--weights``, per-sample weights (``key<TAB>weight`` lines, or a `weight`
    column)."""
    p = pathlib.Path(path)
    if not p.is_file():
        raise ConfigError(f"data.keys_file {path!r} does not exist; write one with `hm select BUILD --out FILE`")
    if p.suffix in (".parquet", ".csv"):
        if p.suffix == ".parquet":
            import pyarrow.parquet as pq

            table = pq.read_table(p)
        else:
            import pyarrow.csv as pacsv

            table = pacsv.read_csv(p)
        if "key" not in table.column_names:
            raise ConfigError(f"data.keys_file {path!r} has no `key` column")
        keys = [str(k) for k in table.column("key").to_pylist()]
        weights = table.column("weight").to_pylist() if "weight" in table.column_names else [1.0] * len(keys)
    else:
        fields = [line.split("\t") for line in p.read_text().splitlines() if line.strip()]
        keys = [f[0].strip() for f in fields]
        try:
            weights = [float(f[1]) if len(f) > 1 else 1.0 for f in fields]
        except ValueError as e:
            raise ConfigError(f"data.keys_file {path!r}: a weight is not a number ({e})") from None
    if not keys:
        raise ConfigError(f"data.keys_file {path!r} lists no keys")
    selection = {k: float(w) for k, w in zip(keys, weights)}
    if not all(np.isfinite(w) and w >= 0 for w in selection.values()) or not any(selection.values()):
        raise ConfigError(f"data.keys_file {path!r}: weights must be finite, >= 0 and not all 0")
    return selection


def repeats(weight: float, rng: np.random.Generator) -> int:
    """How often a sample of this weight is drawn in one pass: floor(w), plus one with probability frac(w); the
    expected count is the weight, so a pass draws every `hm select --weights` bin equally often."""
    whole = int(weight)
    return whole + int(rng.random() < weight - whole)
