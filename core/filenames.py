"""File names as people gave them, made safe to store, show and send in a header."""

from __future__ import annotations

import unicodedata

# Characters that break a Content-Disposition header or a path, besides the invisible ones.
UNSAFE = set('/\\"')


def clean_file_name(raw: str, fallback: str = "file") -> str:
    """``raw`` without folders, control, format (bidi) or unassigned characters; at most 200 long."""
    base = raw.replace("\\", "/").rsplit("/", 1)[-1]
    kept = "".join(c for c in base if c not in UNSAFE and not unicodedata.category(c).startswith("C"))
    kept = " ".join(kept.split()).strip(" .")
    return kept[:200] or fallback
