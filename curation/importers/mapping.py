"""A field mapping as the user writes it (`studio import --map`, the Import screen's fields box):
`instruction=question,output=answer`, our field name = theirs."""
from __future__ import annotations

from ..errors import StudioError


def parse_mapping(text: str | None) -> dict[str, str]:
    mapping: dict[str, str] = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        canonical, sep, theirs = part.partition("=")
        if not sep or not canonical.strip() or not theirs.strip():
            raise StudioError(f"--map: {part!r} is not FIELD=THEIRS (e.g. --map instruction=question,output=answer).")
        mapping[canonical.strip()] = theirs.strip()
    return mapping
