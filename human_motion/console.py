"""Keeping the console readable: native libraries (Ray's C++ core, mediapipe's absl and TensorFlow Lite) write
their own log lines straight to file descriptor 2, past Python's logging. ``filtered_stderr`` routes descriptor 2
through a pipe for the duration of a command and drops the lines in those libraries' formats; everything else
(Python warnings, tracebacks) passes through at once, and so does a progress bar redrawn in place (``\r``) on fd 2.
The returned stream is the original stderr, for progress displays of our own.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import sys
import threading

# What to do about a path the system refused, by errno: every command's one-line refusal of an unusable path.
PATH_ADVICE = {errno.ENOSPC: "free some space", errno.EDQUOT: "free some space (disk quota)",
               errno.EROFS: "choose a path on a writable filesystem", errno.EACCES: "choose a path you may write to",
               errno.EPERM: "choose a path you may write to",
               errno.ENOTDIR: "a folder on the way is a file: choose another path",
               errno.ENAMETOOLONG: "choose a shorter path",
               errno.ENOENT: "a folder on the way does not exist (or the path is wrong): create it or choose another",
               errno.EISDIR: "it is a folder: name a file",
               errno.EEXIST: "a file of that name is in the way of a folder: choose another path"}

# [2026-11-30 22:10:42,324 E 29368 29368] core_worker.cc:2465: ...   (Ray's C++ logging)
# W0000 00:00:1796076596.061366   28255 inference_feedback_manager.cc:114] ...   (absl, mediapipe)
NATIVE_LOG = re.compile(
    rb"^(\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [DIWEF] \d+ \d+\] |[DIWEF]\d{4} [\d:.]+ +\d+ [\w.]+:\d+\] |"
    rb"WARNING: All log messages before absl::InitializeLog|INFO: Created TensorFlow Lite)")


@contextlib.contextmanager
def filtered_stderr(enabled: bool = True):
    """Drop native libraries' log lines from fd 2 while the block runs; yields a text stream on the real stderr."""
    sys.stderr.flush()
    saved = os.dup(2)
    console = open(os.dup(saved), "w", buffering=1, encoding="utf-8", errors="replace")  # noqa: SIM115 - closed below
    if not enabled:
        try:
            yield console
        finally:
            console.close()
            os.close(saved)
        return
    read_fd, write_fd = os.pipe()
    os.dup2(write_fd, 2)
    os.close(write_fd)
    out_fd = os.dup(saved)  # the thread's own: processes started meanwhile (Ray's) may keep the pipe open longer

    def forward() -> None:
        pending = b""
        with os.fdopen(read_fd, "rb", buffering=0) as pipe, os.fdopen(out_fd, "wb", buffering=0) as out:
            while chunk := pipe.read(65536):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                kept = b"".join(line + b"\n" for line in lines if not NATIVE_LOG.match(line))
                if b"\r" in pending:  # a progress bar redrawn in place: shown now, not when its line ends
                    shown, _, pending = pending.rpartition(b"\r")
                    kept += shown + b"\r"
                if kept:
                    out.write(kept)
            if pending and not NATIVE_LOG.match(pending):
                out.write(pending)

    thread = threading.Thread(target=forward, name="hm-stderr-filter", daemon=True)
    thread.start()
    try:
        yield console
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)  # the pipe's writer here is closed: the thread drains it (and ends, once no process has it)
        thread.join(timeout=0.5)
        console.close()
        os.close(saved)
