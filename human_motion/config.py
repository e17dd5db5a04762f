"""Configuration: dataclasses per concern, loaded from YAML/TOML with ``--set key=value`` overrides.

Every command's config is a tree of frozen-by-convention dataclasses. ``load_config(BuildConfig, path, overrides)``
reads a file (YAML or TOML), applies dotted overrides, and checks every key against the dataclass fields, so a typo
stops the run at once with the list of valid keys. Cross-field checks live in each section's ``__post_init__``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import pathlib
import tomllib
import types
import typing
from typing import Any, TypeVar

import yaml

from human_motion.untrusted import FileProblem, decode_utf8, nesting_problem, read_bytes

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration problem; the message says how to fix it (the CLI prints it as one line)."""


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Convert a parsed YAML/TOML/--set value to the annotated type, or raise ConfigError."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{where}: cannot be {value!r}")
    if _is_dataclass_type(tp):
        if isinstance(tp, type) and isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a section (mapping), got {value!r}")
        return _build(tp, value, where)
    if origin in (list, tuple):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{where}: expected {len(args)} values, got {len(value)}")
            return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        item = args[0] if args else Any
        out = [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        vt = args[1] if len(args) == 2 else Any
        return {str(k): _coerce(v, vt, f"{where}.{k}") for k, v in value.items()}
    if origin is typing.Literal:
        if isinstance(value, bool):  # YAML 1.1 reads a bare off/no/on/yes as a boolean
            value = next((a for a in args if str(a).lower() in (("on", "yes", "true") if value
                                                                   else ("off", "no", "false"))), value)
        if value not in args:
            raise ConfigError(f"{where}: must be one of {', '.join(map(repr, args))}, got {value!r}")
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no", "on", "off"):
            return value.lower() in ("true", "1", "yes", "on")
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if tp in (int, float):
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        try:
            number = tp(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r}") from None
        if tp is int and isinstance(value, float) and not value.is_integer():
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        if not math.isfinite(number):  # a NaN threshold would let everything through; no setting means infinity
            raise ConfigError(f"{where}: expected a finite number, got {value!r}")
        return number
    if tp is str:
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{where}: expected text, got {value!r}")
        return str(value)
    return value


def _build(cls: type[T], data: dict[str, Any], where: str = "") -> T:
    fields = _field_types(cls)
    unknown = sorted(set(data) - set(fields))
    if unknown:
        prefix = f"{where}." if where else ""
        raise ConfigError(
            f"unknown config key {prefix + unknown[0]!r}; valid keys{' in ' + where if where else ''}: "
            + ", ".join(sorted(fields))
        )
    kwargs = {}
    for name, tp in fields.items():
        if name in data:
            kwargs[name] = _coerce(data[name], tp, f"{where}.{name}" if where else name)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(f"{where or cls.__name__}: {e}") from None


def to_dict(cfg: Any) -> dict[str, Any]:
    """The config as plain data (for manifests and ``config.yaml`` next to outputs)."""
    return json.loads(json.dumps(dataclasses.asdict(cfg), default=str))


MAX_CONFIG_BYTES = 4 * 2**20
MAX_CONFIG_DEPTH = 32  # sections nest 3-5 levels; options may hold small lists of lists
MAX_CONFIG_VALUES = 100_000


def read_config_file(path: str | pathlib.Path) -> dict[str, Any]:
    """The mapping in a YAML or TOML file, read as untrusted: a FIFO, device or dangling link is refused without
    being opened, and a file that is not UTF-8, does not parse, nests too deeply or expands (YAML aliases) past
    MAX_CONFIG_VALUES values is a ConfigError naming the file."""
    path = pathlib.Path(path)
    where = f"config file {str(path)!r}"
    try:
        text = decode_utf8(read_bytes(path, MAX_CONFIG_BYTES))
    except FileProblem as e:
        hint = "pass an existing --config path" if e.reason == "missing_file" else "pass a config file"
        raise ConfigError(f"{where} {e.what}; {hint}") from None
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as e:
        raise ConfigError(f"{where} does not parse: {str(e).splitlines()[0]}") from None
    except RecursionError:
        raise ConfigError(f"{where} nests too deeply to parse; a config has a few levels of sections") from None
    except ValueError as e:  # e.g. an integer past Python's 4300-digit conversion limit
        raise ConfigError(f"{where} holds a value that cannot be read ({str(e)[:100]})") from None
    problem = nesting_problem(data, MAX_CONFIG_DEPTH, MAX_CONFIG_VALUES)
    if problem:
        raise ConfigError(f"{where} {problem}; a config has a few levels of sections")
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must hold a mapping of sections at top level")
    return data


def parse_override(text: str) -> tuple[list[str], Any]:
    """``a.b.c=value`` -> (["a", "b", "c"], value parsed as YAML: numbers, booleans, lists, null)."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected key=value, for example --set decode.size_px=256")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set {text!r}: the key must be dotted names, for example flow.backend")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except (yaml.YAMLError, RecursionError, ValueError):  # ValueError: an integer too long to convert
        value = raw
    if nesting_problem(value, MAX_CONFIG_DEPTH, MAX_CONFIG_VALUES):
        raise ConfigError(f"--set {key}: the value nests too deeply or holds too many values")
    return key.split("."), value


def _set_path(data: dict[str, Any], keys: list[str], value: Any) -> None:
    node = data
    for k in keys[:-1]:
        nxt = node.setdefault(k, {})
        if not isinstance(nxt, dict):
            raise ConfigError(f"--set {'.'.join(keys)}: {k!r} is a value, not a section")
        node = nxt
    node[keys[-1]] = value


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge ``extra`` into a copy of ``base`` (mappings merge, everything else replaces)."""
    out = dict(base)
    for k, v in extra.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_config(
    cls: type[T],
    path: str | pathlib.Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    base: dict[str, Any] | None = None,
) -> T:
    """Build ``cls`` from defaults, then ``base``, then the file at ``path``, then ``--set`` overrides."""
    data: dict[str, Any] = dict(base or {})
    if path is not None:
        data = merge(data, read_config_file(path))
    for text in overrides:
        keys, value = parse_override(text)
        _set_path(data, keys, value)
    return _build(cls, data)


def packaged_config(name: str) -> pathlib.Path:
    """Path of a config shipped in ``human_motion/configs`` (``build``, ``train_tiny``...)."""
    path = pathlib.Path(__file__).parent / "configs" / f"{name}.yaml"
    if not path.is_file():
        names = sorted(p.stem for p in path.parent.glob("*.yaml"))
        raise ConfigError(f"no packaged config {name!r}; available: {', '.join(names)}")
    return path


def packaged_configs(prefix: str = "") -> list[str]:
    """Names of the configs shipped in ``human_motion/configs`` that start with ``prefix`` (for help texts)."""
    folder = pathlib.Path(__file__).parent / "configs"
    return sorted(p.stem for p in folder.glob(f"{prefix}*.yaml"))


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` shows each option's default, except empty ones (None, False, [], "") that say nothing and those
    whose help already says it."""

    def _get_help_string(self, action):
        empty = action.default is None or isinstance(action.default, bool) or action.default in ([], "")
        if empty or action.default is argparse.SUPPRESS or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def resolve_config_path(value: str | None) -> pathlib.Path | None:
    """``--config`` takes a file path or the name of a packaged config (``--config train_tiny``)."""
    if value is None:
        return None
    p = pathlib.Path(value)
    if p.suffix in (".yaml", ".yml", ".toml") or p.exists():
        return p
    return packaged_config(value)
