"""The canonical expression taxonomy and the synonyms that map dataset labels onto it."""

from __future__ import annotations

import re

CANONICAL = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral", "contempt")
BASIC7 = CANONICAL[:7]

# FER2013 / fer2013.csv / ExpW emotion ids (0..6).
FER2013_IDS = {0: "angry", 1: "disgust", 2: "fear", 3: "happy", 4: "sad", 5: "surprise", 6: "neutral"}

_SYNONYMS = {
    "angry": ["angry", "anger", "ang", "an", "mad", "furious", "rage"],
    "disgust": ["disgust", "disgusted", "disgusting", "dis", "di", "disg"],
    "fear": ["fear", "fearful", "afraid", "scared", "fe", "fea"],
    "happy": ["happy", "happiness", "happyness", "joy", "ha", "hap", "smile", "smiling"],
    "sad": ["sad", "sadness", "sa", "unhappy"],
    "surprise": ["surprise", "surprised", "su", "sur", "suprise", "surprize"],
    "neutral": ["neutral", "ne", "neu", "calm"],
    "contempt": ["contempt", "co", "con", "contemptuous"],
}
SYNONYMS: dict[str, str] = {s: canon for canon, words in _SYNONYMS.items() for s in words}
# words trusted inside longer names ("01_happy", "sad-faces"); short codes only match whole names
_WORDS = {w for w in SYNONYMS if len(w) >= 4} | {"sad", "joy"}


def _norm(text: str) -> str:
    return re.sub(r"[^a-z]", "", str(text).strip().lower())


def canonical_label(name: str, numeric_map: dict[int, str] | None = None) -> str | None:
    """Map a dataset's label (folder name, code or id) to the canonical taxonomy, or None if unknown.

    ``numeric_map`` resolves numeric folder names / ids ("3" → "happy"); its values may themselves be
    synonyms.
    """
    raw = str(name).strip()
    if numeric_map is not None and re.fullmatch(r"\d+", raw):
        mapped = numeric_map.get(int(raw))
        return canonical_label(mapped) if mapped is not None else None
    key = _norm(raw)
    if not key:
        return None
    if key in SYNONYMS:
        return SYNONYMS[key]
    # forms like "01_happy", "happy_faces": take the first known word
    for part in re.split(r"[^a-z]+", raw.lower()):
        if part in _WORDS:
            return SYNONYMS[part]
    return None
