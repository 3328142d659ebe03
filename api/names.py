r"""What makes two user names the same to a reader: the UTS #39 skeleton of the name folded.

Names are seen by other users (a message says who it is from), so a new name may not look like an
existing one: `Admin`, `ADMIN`, fullwidth `\uff41dmin` and Cyrillic `\u0430dmin` all read as
`admin`. The key compared is NFKC, then case folding, then Unicode's confusables skeleton (NFD, each
character mapped by `confusables.txt`, NFD again), folded again (the mapping's prototypes include
capitals: `0` maps to `O`). The data is Unicode's own file, shipped unchanged with its version in
its name and its SHA-256 checked when it is loaded.
"""

from __future__ import annotations

import functools
import hashlib
import unicodedata
from pathlib import Path

CONFUSABLES_VERSION = "18.0.0"
CONFUSABLES = Path(__file__).resolve().parent / "data" / f"confusables-{CONFUSABLES_VERSION}.txt"
CONFUSABLES_SHA256 = "6ed3ee967c9dfdf6677d563c9985182fbc50a2efb7d6059cd57b2e2ce18f5b92"


@functools.cache
def _prototypes() -> dict[int, str]:
    """confusables.txt's MA table: code point -> its prototype."""
    raw = CONFUSABLES.read_bytes()
    if hashlib.sha256(raw).hexdigest() != CONFUSABLES_SHA256:
        raise RuntimeError(f"{CONFUSABLES.name} is not Unicode's file of version 18.0.0")
    table: dict[int, str] = {}
    for line in raw.decode("utf-8-sig").splitlines():
        fields = line.split("#", 1)[0].split(";")
        if len(fields) >= 3 and fields[2].strip() == "MA":
            source = int(fields[0].strip(), 16)
            table[source] = "".join(chr(int(point, 16)) for point in fields[1].split())
    return table


def skeleton(name: str) -> str:
    """The key two names share when a reader cannot tell them apart."""
    folded = unicodedata.normalize("NFKC", name).casefold()
    mapped = unicodedata.normalize("NFD", folded).translate(_prototypes())
    return unicodedata.normalize("NFD", mapped).casefold()


def skeleton_digest(name: str) -> str:
    """The skeleton as a short, key-safe digest (a key names it, in its own cluster slot)."""
    return hashlib.sha256(skeleton(name).encode("utf-8")).hexdigest()[:32]
