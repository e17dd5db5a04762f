"""Reading files someone else wrote (corpus metadata, config files): bounded, and never hanging.

A file is checked with ``stat`` before it is opened, so a FIFO, a device or a dangling link is refused without
being opened (opening a FIFO for reading blocks until a writer appears: a build would hang forever). Reads are
bounded in bytes; text must be UTF-8; parsed documents are bounded in nesting depth and in size, and numbers too
long to convert are turned into infinities that the row checks then reject, instead of exceptions from deep inside
the parser. Every problem is a :class:`FileProblem` with a short reason code and a phrase that completes
"'<path>' ...", so callers turn it into one line (a ConfigError) or a rejection row.
"""

from __future__ import annotations

import json
import os
import stat
from typing import Any

MAX_INT_DIGITS = 40  # longer integers become floats (inf past ~308 digits): no int() digit-limit ValueError
# Without a bound, a YAML file of nested aliases ("billion laughs") expands to billions of nodes when traversed.
MAX_NODES = 1_000_000


class FileProblem(Exception):
    """A file that cannot be used. ``what`` completes the sentence "'<path>' ..." (e.g. "is a FIFO, not a
    regular file")."""

    def __init__(self, reason: str, what: str):
        super().__init__(what)
        self.reason, self.what = reason, what


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def file_problem(path: str | os.PathLike) -> FileProblem | None:
    """Why ``path`` is not a regular file, found with stat/lstat only (nothing is opened); None if it is one."""
    try:
        st = os.stat(path)  # follows links; never opens the target
    except FileNotFoundError:
        if os.path.islink(path):
            return FileProblem("missing_file", f"is a link to {os.readlink(path)!r}, which does not exist")
        return FileProblem("missing_file", "does not exist")
    except OSError as e:
        return FileProblem("unreadable", f"cannot be examined ({e.strerror})")
    if stat.S_ISREG(st.st_mode):
        return None
    kind = _kind(st.st_mode)
    return FileProblem("not_a_file", f"is {kind}, not a regular file" if kind.startswith("a ") else f"is {kind}")


def read_bytes(path: str | os.PathLike, max_bytes: int, truncate: bool = False) -> bytes:
    """The whole file, if it is a regular file of at most ``max_bytes`` (with ``truncate``, its first
    ``max_bytes``); FileProblem otherwise."""
    problem = file_problem(path)
    if problem:
        raise problem
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        # O_NONBLOCK: if the file was swapped for a FIFO since the stat above, open returns at once, not never.
        fd = os.open(path, flags)
    except OSError as e:
        raise FileProblem("unreadable", f"cannot be read ({e.strerror})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise FileProblem("not_a_file", f"is {_kind(st.st_mode)}, not a regular file")
        if st.st_size > max_bytes and not truncate:
            raise FileProblem("too_large", f"is {st.st_size:,} bytes, more than the {max_bytes:,} allowed")
        with os.fdopen(os.dup(fd), "rb") as f:
            data = f.read(max_bytes + 1)
    except OSError as e:
        raise FileProblem("unreadable", f"cannot be read ({e.strerror})") from None
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        if truncate:
            return data[:max_bytes]
        raise FileProblem("too_large", f"grew past the {max_bytes:,} bytes allowed while being read")
    return data


def decode_utf8(data: bytes) -> str:
    """UTF-8 text (a leading byte-order mark is dropped); FileProblem("not_utf8") naming the first bad byte."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise FileProblem("not_utf8", f"is not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start}); "
                          "save it as UTF-8") from None


def _bounded_int(text: str) -> int | float:
    return int(text) if len(text.lstrip("-")) <= MAX_INT_DIGITS else float(text)


def loads_json(text: str) -> Any:
    """JSON with bounded numbers (see MAX_INT_DIGITS); FileProblem("bad_json") for anything that does not parse,
    including nesting deeper than the parser's recursion limit."""
    try:
        return json.loads(text, parse_int=_bounded_int)
    except json.JSONDecodeError as e:
        raise FileProblem("bad_json", f"is not valid JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
    except RecursionError:
        raise FileProblem("bad_json", "nests JSON arrays or objects too deeply to parse") from None
    except ValueError as e:
        raise FileProblem("bad_json", f"is not valid JSON ({str(e)[:100]})") from None


def nesting_problem(data: Any, max_depth: int, max_nodes: int = MAX_NODES) -> str | None:
    """Why ``data`` is too deep or too big ("nests N levels deep, more than ..."), or None. Iterative, and shared
    objects (YAML aliases) count every time they are reached, as a traversal would meet them."""
    stack = [(data, 1)]
    nodes = 0
    while stack:
        node, depth = stack.pop()
        nodes += 1
        if nodes > max_nodes:
            return f"holds more than {max_nodes:,} values (counting each alias expansion)"
        if depth > max_depth:
            return f"nests more than {max_depth} levels deep"
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, (list, tuple)):
            stack.extend((v, depth + 1) for v in node)
    return None


def has_control_chars(text: str) -> bool:
    """NUL, newline, escape and the other C0/C1 control characters (tab excepted) that have no place in a label."""
    return any((ord(c) < 32 and c != "\t") or 0x7F <= ord(c) < 0xA0 for c in text)


def strip_control_chars(text: str) -> str:
    return "".join(c if not has_control_chars(c) else " " for c in text)
