"""One random edit of ADQL text for the fuzzers (tests/engine/test_safety.py and
tests/service/test_no_engine_text.py): splice in a piece, cut a few characters, or insert
one character from the Latin ranges."""

from __future__ import annotations

import random
from collections.abc import Sequence


def mutate(
    text: str, rng: random.Random, pieces: Sequence[str], *, splice: float, cut: float
) -> str:
    """``text`` with one edit at a random place: a piece with probability ``splice``, a cut
    of 1–8 characters up to ``cut`` (cumulative), otherwise one inserted character."""
    pos = rng.randrange(len(text) + 1)
    action = rng.random()
    if action < splice:
        return text[:pos] + rng.choice(pieces) + text[pos:]
    if action < cut:
        return text[:pos] + text[pos + rng.randint(1, 8) :]
    return text[:pos] + chr(rng.randint(32, 0x2FF)) + text[pos:]
