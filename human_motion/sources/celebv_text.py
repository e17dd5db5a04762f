"""``celebv-text``: CelebV-Text (Yu et al., CVPR 2023) from ``celebvtext_info.json``, its videos and its texts.

Metadata: like CelebV-HQ's, but the clips sit under ``clips`` or under ``clips_set1``/``clips_set2``/...
(every top-level ``clips*`` mapping is read), the box is in **pixels** of the source video
(``{"top": 0, "bottom": 937, "left": 849, "right": 1872}``), and the span is ``duration.start_sec/end_sec`` or
``duration.start_frame/end_frame``. The published example gives ``start_frame: 415.29``, a time, under the frame
keys; so with ``options.frame_keys: auto`` (default) fractional values there are read as seconds and integral
values as frame numbers; ``frames`` or ``seconds`` forces one reading.

Texts (the per-attribute description files, one sentence per line), under ``options.texts_dir`` (default the first
of ``texts``, ``celebvtext_texts``, ``descriptions``, ``text`` in the root), in any of these layouts:
``{attribute}/{clip_id}.txt`` (the published archives: folders such as ``face40_details_new``, ``emotion``,
``action_dur``, ``light_dir``, ``light_intensity``, ``light_color_temp``), ``{clip_id}/{attribute}.txt``, or a
flat ``{clip_id}.txt``. Appearance, emotion and action sentences make the description; the action sentence gives
the candidate action phrase.

Media: as ``celebv-hq`` (``{clip_id}.mp4`` cut clips from ``download_and_process.py``, or ``{ytb_id}.mp4`` raw
videos with span and box). For raw videos the pixel box is normalised with the video's size read from its header.
"""

from __future__ import annotations

import os
import pathlib
import re
from typing import Any

from human_motion.config import ConfigError
from human_motion.sources.celebv_hq import CelebVHQSource, log
from human_motion.sources.celebv_labels import ACTION_PHRASES, ACTION_PRIORITY, MAX_ACTIONS_IN_PHRASE
from human_motion.sources._common import (
    RootGuard, RowError, box_tblr, check_span_s, first_existing, need, norm_box, number, option_path, probe_size, walk,
)
from human_motion.untrusted import FileProblem, read_bytes, strip_control_chars

TEXT_DIR_NAMES = ("texts", "celebvtext_texts", "descriptions", "text")
MAX_TEXT_BYTES = 64 * 1024
MAX_DESCRIPTION_CHARS = 600
# Attribute folder/file name -> kind; the first keyword found in the lower-cased name decides.
KINDS = (("emotion", "emotion"), ("action", "action"), ("light", "light"), ("face", "appearance"),
         ("appear", "appearance"), ("detail", "appearance"), ("general", "appearance"))
# Words of an action sentence -> the label whose phrase it names (CelebV-Text's actions extend CelebV-HQ's).
ACTION_WORDS = {
    "smil": "smile", "laugh": "laugh", "talk": "talk", "speak": "talk", "nod": "nod", "shak": "shake_head",
    "turn": "turn", "wink": "wink", "blink": "close_eyes", "close": "close_eyes", "yawn": "yawn", "frown": "frown",
    "sing": "sing", "shout": "shout", "whisper": "whisper", "cry": "cry", "weep": "weep", "kiss": "kiss",
    "blow": "blow", "sneer": "sneer", "glar": "glare", "gaz": "gaze", "look around": "look_around", "sigh": "sigh",
    "sniff": "sniff", "sneez": "sneeze", "cough": "cough", "chew": "chew", "eat": "eat", "drink": "drink",
    "smok": "smoke", "read": "read", "music": "listen_to_music", "play": "play_instrument", "sleep": "sleep",
    "grimac": "make_a_face", "wag": "head_wagging",
}
_VERB_PHRASE = re.compile(r"\b(?:is|are|was|were|keeps|starts|begins)\s+([a-z][a-z ,'-]*?ing\b[a-z ,'-]*)",
                          re.IGNORECASE)


def text_kind(name: str) -> str:
    low = name.lower()
    for word, kind in KINDS:
        if word in low:
            return kind
    return "text"


def action_from_sentence(sentence: str) -> str | None:
    """A short action phrase from a CelebV-Text action sentence ("She is talking and smiling." -> "smiling and
    talking"): known action words first, else the sentence's "is ...ing" phrase."""
    low = sentence.lower()
    found = []
    for word, label in ACTION_WORDS.items():
        if re.search(rf"\b{re.escape(word)}", low) and label not in found:
            if label == "shake_head" and "head" not in low:
                continue
            found.append(label)
    if found:
        found.sort(key=ACTION_PRIORITY.index)
        return " and ".join(ACTION_PHRASES[a] for a in found[:MAX_ACTIONS_IN_PHRASE])
    m = _VERB_PHRASE.search(sentence)
    return m.group(1).strip(" ,.")[:80] if m else None


class CelebVTextSource(CelebVHQSource):
    """Options: those of ``celebv-hq`` (``info`` defaults to ``celebvtext_info.json``), plus ``texts_dir`` and
    ``frame_keys`` (auto | frames | seconds)."""

    info_names = ("celebvtext_info.json",)

    def __init__(self, name, cfg, work_dir):
        super().__init__(name, cfg, work_dir)
        self.frame_keys = self.options.get("frame_keys", "auto")
        if self.frame_keys not in ("auto", "frames", "seconds"):
            raise ConfigError(f"sources.{name}.options.frame_keys must be auto, frames or seconds")
        self.texts: dict[str, dict[str, pathlib.Path | RowError]] = {}
        self._sizes: dict[pathlib.Path, tuple[int, int] | None] = {}

    def clip_rows(self, data: Any, path: pathlib.Path) -> dict[str, Any]:
        sets = [k for k in sorted(data) if k.startswith("clips") and isinstance(data[k], dict)] \
            if isinstance(data, dict) else []
        if not sets:
            raise ConfigError(f"source {self.name!r}: {str(path)!r} has no 'clips' or 'clips_set*' mapping at top "
                              "level; is it celebvtext_info.json?")
        rows: dict[str, Any] = {}
        for key in sets:
            for clip_id, row in data[key].items():
                if clip_id in rows:  # the same clip in two sets: keep the first, record the second
                    rows[f"{clip_id} ({key})"] = {"_duplicate_of": clip_id}
                else:
                    rows[clip_id] = row
        return rows

    def mappings(self, data: dict) -> dict[str, list[str]]:
        return {}

    def prepare(self, rows: dict[str, Any]) -> None:
        """Index the text files: clip id -> {attribute: path, or the RowError of a text that must not be read}."""
        guard = self.guard
        if "texts_dir" in self.options:  # named by the user: read wherever it is
            tdir: pathlib.Path | None = option_path(self.root, self.options["texts_dir"],
                                                    f"sources.{self.name}.options.texts_dir")
            guard = RootGuard(tdir, self.name, self.allow_outside)
        else:
            tdir = first_existing(self.root, TEXT_DIR_NAMES) if self.root.is_dir() else None
        if tdir is None or not tdir.is_dir():
            return
        ids = {k for k in rows if isinstance(k, str)}
        for entry in walk(tdir, guard):
            if entry.path == tdir:  # the texts folder itself links out of the root
                log.warning("source %s: texts not read: %s", self.name, entry.problem.detail)
                return
            here = entry.path.parent
            stem, ext = os.path.splitext(entry.path.name)
            if entry.is_dir or ext.lower() != ".txt":
                continue
            found = entry.problem or entry.path
            if stem in ids:  # {attribute}/{clip_id}.txt or {clip_id}.txt
                attr = here.name if here != tdir else "text"
                self.texts.setdefault(stem, {}).setdefault(attr, found)
            elif here.name in ids and here != tdir:  # {clip_id}/{attribute}.txt
                self.texts.setdefault(here.name, {}).setdefault(stem, found)

    def span(self, duration: Any) -> tuple[float | None, float | None, tuple[int, int] | None]:
        if not isinstance(duration, dict):
            raise RowError("bad_span", f"duration is {str(duration)[:60]!r}, not a mapping")
        if "start_sec" in duration or "end_sec" in duration:
            return super().span(duration)
        if "start_frame" not in duration and "end_frame" not in duration:
            raise RowError("missing_key", "duration has neither start_sec/end_sec nor start_frame/end_frame")
        start = number(need(duration, "start_frame", "duration."), "duration.start_frame")
        end = number(need(duration, "end_frame", "duration."), "duration.end_frame")
        as_frames = self.frame_keys == "frames" or (
            self.frame_keys == "auto" and start.is_integer() and end.is_integer())
        start, end = check_span_s(start, end)
        if as_frames:
            return None, None, (int(start), int(end))
        return start, end, None

    def box(self, bbox: Any, raw_video: pathlib.Path | None) -> tuple[float, float, float, float]:
        x0, y0, x1, y1 = box_tblr(bbox)
        if min(x0, y0) < 0 or x1 <= x0 or y1 <= y0:
            raise RowError("bad_bbox", f"pixel box x {x0}..{x1}, y {y0}..{y1} is negative, inverted or empty")
        if raw_video is None:
            return (0.0, 0.0, 1.0, 1.0)  # a cut clip is the box itself
        if raw_video not in self._sizes:
            self._sizes[raw_video] = probe_size(raw_video)
        size = self._sizes[raw_video]
        if size is None:  # unreadable video: decode records why; no hint
            return (0.0, 0.0, 1.0, 1.0)
        return norm_box(x0, y0, x1, y1, *size)

    def spec(self, clip_id, row, mappings, clips, raw):
        if isinstance(row, dict) and "_duplicate_of" in row:
            raise RowError("duplicate_id", f"{row['_duplicate_of']!r} appears in more than one clips set")
        spec = super().spec(clip_id, row, mappings, clips, raw)
        if spec.bbox == (0.0, 0.0, 1.0, 1.0):
            spec.bbox = None
        return spec

    def labels(self, clip_id: str, row: dict, mappings: dict[str, list[str]]) -> dict[str, Any]:
        texts: dict[str, list[str]] = {}
        for attr, path in sorted(self.texts.get(clip_id, {}).items()):
            if isinstance(path, RowError):  # a link out of the root, a FIFO...: never opened
                raise RowError(path.reason, f"text file {path.detail}")
            try:
                raw = read_bytes(path, MAX_TEXT_BYTES, truncate=True)
            except FileProblem as e:
                raise RowError("unreadable_text", f"{path.name} {e.what}") from None
            # Free text from the corpus: undecodable bytes become U+FFFD, control characters (NUL...) spaces.
            lines = [strip_control_chars(ln).strip() for ln in raw.decode("utf-8", "replace").splitlines()]
            lines = [ln for ln in lines if ln]
            if lines:
                texts[attr] = lines
        if not texts:
            return {}
        by_kind: dict[str, list[str]] = {}
        for attr, lines in texts.items():
            by_kind.setdefault(text_kind(attr), []).extend(lines)
        labels: dict[str, Any] = {"texts": texts}
        parts = [by_kind[k][0] for k in ("appearance", "text", "emotion", "action") if by_kind.get(k)]
        labels["description"] = " ".join(parts)[:MAX_DESCRIPTION_CHARS]
        action_lines = by_kind.get("action") or ([] if "appearance" in by_kind else by_kind.get("text", []))
        for line in action_lines:
            phrase = action_from_sentence(line)
            if phrase:
                labels["action"] = phrase
                break
        return labels
