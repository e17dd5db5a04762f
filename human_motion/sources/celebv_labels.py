"""CelebV-HQ's attribute names, and source labels -> a readable description and a candidate action phrase.

The name lists are CelebV-HQ's published label sets (Zhu et al., "CelebV-HQ: A Large-Scale Video Facial Attributes
Dataset", ECCV 2022, https://celebv-hq.github.io, Table 1 / Fig. 2), in the order of the vectors of
``celebvhq_info.json``; the file's own ``meta_info.{appearance,action,emotion}_mapping`` lists, when present, take
precedence over these. The appearance list follows CelebA's 40 attributes as adapted by CelebV-HQ.
"""

from __future__ import annotations

from typing import Any

from human_motion.sources._common import RowError, number
from human_motion.untrusted import has_control_chars

APPEARANCE = [
    "blurry", "male", "young", "chubby", "pale_skin", "rosy_cheeks", "oval_face", "receding_hairline", "bald",
    "bangs", "black_hair", "blonde_hair", "gray_hair", "brown_hair", "straight_hair", "wavy_hair", "long_hair",
    "arched_eyebrows", "bushy_eyebrows", "bags_under_eyes", "eyeglasses", "sunglasses", "narrow_eyes", "big_nose",
    "pointy_nose", "high_cheekbones", "big_lips", "double_chin", "no_beard", "5_o_clock_shadow", "goatee",
    "mustache", "sideburns", "heavy_makeup", "wearing_earrings", "wearing_hat", "wearing_lipstick",
    "wearing_necklace", "wearing_necktie", "wearing_mask",
]
ACTION = [
    "blow", "chew", "close_eyes", "cough", "cry", "drink", "eat", "frown", "gaze", "glare", "head_wagging", "kiss",
    "laugh", "listen_to_music", "look_around", "make_a_face", "nod", "play_instrument", "read", "shake_head",
    "shout", "sigh", "sing", "sleep", "smile", "smoke", "sneer", "sneeze", "sniff", "talk", "turn", "weep",
    "whisper", "wink", "yawn",
]
EMOTION = ["neutral", "happy", "sad", "anger", "fear", "surprise", "contempt", "disgust"]
assert len(APPEARANCE) == 40 and len(ACTION) == 35 and len(EMOTION) == 8

# Action label -> the action phrase A of the paper ("smiling", "turning head to the left").
ACTION_PHRASES = {
    "blow": "blowing", "chew": "chewing", "close_eyes": "closing eyes", "cough": "coughing", "cry": "crying",
    "drink": "drinking", "eat": "eating", "frown": "frowning", "gaze": "gazing", "glare": "glaring",
    "head_wagging": "wagging head", "kiss": "kissing", "laugh": "laughing", "listen_to_music": "listening to music",
    "look_around": "looking around", "make_a_face": "making a face", "nod": "nodding",
    "play_instrument": "playing an instrument", "read": "reading", "shake_head": "shaking head",
    "shout": "shouting", "sigh": "sighing", "sing": "singing", "sleep": "sleeping", "smile": "smiling",
    "smoke": "smoking", "sneer": "sneering", "sneeze": "sneezing", "sniff": "sniffing", "talk": "talking",
    "turn": "turning head", "weep": "weeping", "whisper": "whispering", "wink": "winking", "yawn": "yawning",
}
# Facial actions first: they are what the motion condition is about; props (eat, read, play) last.
ACTION_PRIORITY = ["smile", "laugh", "talk", "shake_head", "nod", "turn", "head_wagging", "look_around", "wink",
                   "close_eyes", "yawn", "frown", "make_a_face", "sing", "shout", "whisper", "cry", "weep", "kiss",
                   "blow", "sneer", "glare", "gaze", "sigh", "sniff", "sneeze", "cough", "chew", "eat", "drink",
                   "smoke", "read", "listen_to_music", "play_instrument", "sleep"]
APPEARANCE_PHRASES = {
    "pale_skin": "pale skin", "rosy_cheeks": "rosy cheeks", "oval_face": "an oval face",
    "receding_hairline": "a receding hairline", "bald": "a bald head", "bangs": "bangs", "black_hair": "black hair",
    "blonde_hair": "blonde hair", "gray_hair": "gray hair", "brown_hair": "brown hair",
    "straight_hair": "straight hair", "wavy_hair": "wavy hair", "long_hair": "long hair",
    "arched_eyebrows": "arched eyebrows", "bushy_eyebrows": "bushy eyebrows", "bags_under_eyes": "bags under the eyes",
    "eyeglasses": "eyeglasses", "sunglasses": "sunglasses", "narrow_eyes": "narrow eyes", "big_nose": "a big nose",
    "pointy_nose": "a pointy nose", "high_cheekbones": "high cheekbones", "big_lips": "big lips",
    "double_chin": "a double chin", "5_o_clock_shadow": "a five o'clock shadow", "goatee": "a goatee",
    "mustache": "a mustache", "sideburns": "sideburns", "heavy_makeup": "heavy makeup",
    "wearing_earrings": "earrings", "wearing_hat": "a hat", "wearing_lipstick": "lipstick",
    "wearing_necklace": "a necklace", "wearing_necktie": "a necktie", "wearing_mask": "a mask",
}
EMOTION_WORDS = {"neutral": "neutral", "happy": "happy", "sad": "sad", "anger": "angry", "angry": "angry",
                 "fear": "afraid", "surprise": "surprised", "contempt": "contemptuous", "disgust": "disgusted"}
MAX_APPEARANCE_PHRASES = 4
MAX_ACTIONS_IN_PHRASE = 2


def positives(vector: Any, names: list[str], what: str) -> list[str]:
    """Names of the entries set in a 0/1 vector of len(names); RowError("bad_labels") on any other shape."""
    if not isinstance(vector, list) or len(vector) != len(names):
        size = len(vector) if isinstance(vector, list) else type(vector).__name__
        raise RowError("bad_labels", f"{what} must be a list of {len(names)} 0/1 values, got {size}")
    out = []
    for name, v in zip(names, vector):
        value = number(v, what)
        if value not in (0.0, 1.0):
            raise RowError("bad_labels", f"{what} holds {v!r}; expected 0 or 1")
        if value == 1.0:
            out.append(name)
    return out


def dominant_emotion(raw: Any, names: list[str]) -> tuple[str | None, list[dict]]:
    """(the emotion that lasts longest, its timed segments) from every form CelebV-HQ uses:
    ``"happy"``, an index, ``{"sep_flag": false, "labels": "happy"}``, or ``{"sep_flag": true, "labels":
    [{"emotion": "happy", "start_sec": 0.0, "end_sec": 2.1}, ...]}`` (also a bare list of such segments)."""
    if raw is None:
        return None, []
    if isinstance(raw, dict):
        if "labels" not in raw:
            raise RowError("bad_labels", "emotion mapping lacks 'labels'")
        raw = raw["labels"]
    if isinstance(raw, bool):
        raise RowError("bad_labels", f"emotion is {raw!r}")
    if isinstance(raw, (int, float)):
        i = int(number(raw, "emotion"))
        if not 0 <= i < len(names) or i != raw:
            raise RowError("bad_labels", f"emotion index {raw!r} outside 0..{len(names) - 1}")
        return names[i], []
    if isinstance(raw, str):
        return _emotion_name(raw, names), []
    if isinstance(raw, list):
        totals: dict[str, float] = {}
        segments = []
        for seg in raw:
            if not isinstance(seg, dict):
                raise RowError("bad_labels", f"emotion segment {str(seg)[:60]!r} is not a mapping")
            label = seg.get("emotion", seg.get("label", seg.get("labels")))
            name = dominant_emotion(label, names)[0] if not isinstance(label, dict) else None
            if name is None:
                raise RowError("bad_labels", f"emotion segment {str(seg)[:60]!r} has no emotion")
            start = number(seg.get("start_sec", 0.0), "emotion start_sec")
            end = number(seg.get("end_sec", start), "emotion end_sec")
            totals[name] = totals.get(name, 0.0) + max(0.0, end - start)
            segments.append({"emotion": name, "start_sec": start, "end_sec": end})
        if not totals:
            return None, []
        return max(totals, key=lambda k: (totals[k], -list(totals).index(k))), segments
    raise RowError("bad_labels", f"emotion is a {type(raw).__name__}")


def _emotion_name(text: str, names: list[str]) -> str:
    name = text.strip().lower()
    if not name or len(name) > 40 or has_control_chars(name):
        raise RowError("bad_labels", f"emotion {text[:40]!r} is not a label")
    return name


def action_phrase(actions: list[str]) -> str | None:
    """The candidate action phrase: the most face-related labels, at most two, joined with "and"."""
    ranked = sorted(actions, key=lambda a: ACTION_PRIORITY.index(a) if a in ACTION_PRIORITY else len(ACTION_PRIORITY))
    phrases = [ACTION_PHRASES.get(a, a.replace("_", " ")) for a in ranked[:MAX_ACTIONS_IN_PHRASE]]
    return " and ".join(phrases) if phrases else None


def appearance_phrase(appearance: list[str]) -> str:
    """"a young man with black hair, eyeglasses and a mustache" from the positive appearance labels."""
    who = "man" if "male" in appearance else "woman"
    if "young" in appearance:
        who = f"young {who}"
    if "chubby" in appearance:
        who = f"chubby {who}"
    feats = [APPEARANCE_PHRASES[a] for a in appearance if a in APPEARANCE_PHRASES][:MAX_APPEARANCE_PHRASES]
    text = f"a {who}"
    if feats:
        text += " with " + (feats[0] if len(feats) == 1 else ", ".join(feats[:-1]) + " and " + feats[-1])
    return text


def celebvhq_labels(attributes: Any, mappings: dict[str, list[str]]) -> dict[str, Any]:
    """CelebV-HQ ``attributes`` -> labels: ``description`` (a sentence), ``action`` (candidate phrase), ``emotion``,
    ``appearance`` (phrase), and the readable label lists under ``attributes``."""
    if attributes is None:
        return {}
    if not isinstance(attributes, dict):
        raise RowError("bad_labels", f"attributes is a {type(attributes).__name__}, not a mapping")
    appearance = positives(attributes["appearance"], mappings["appearance"], "attributes.appearance") \
        if attributes.get("appearance") is not None else []
    actions = positives(attributes["action"], mappings["action"], "attributes.action") \
        if attributes.get("action") is not None else []
    emotion, segments = dominant_emotion(attributes.get("emotion"), mappings["emotion"])
    labels: dict[str, Any] = {"attributes": {"appearance": appearance, "action": actions, "emotion": emotion,
                                             "emotion_segments": segments}}
    phrase = action_phrase(actions)
    who = appearance_phrase(appearance) if attributes.get("appearance") is not None else "a person"
    sentence = f"A close-up video of {who}"
    if emotion:
        sentence += f", looking {EMOTION_WORDS.get(emotion, emotion)}"
        labels["emotion"] = emotion
    if phrase:
        sentence += f", {phrase}"
        labels["action"] = phrase
    labels["appearance"] = who
    labels["description"] = sentence + "."
    return labels
