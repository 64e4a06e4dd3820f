"""Signed bulk URLs: the key, the signature and what a signature covers."""

from __future__ import annotations

import stat
from dataclasses import replace
from pathlib import Path

from skyvault.bulk.signing import covers, load_key, sign, verify

#: Where docs/architecture.md says the key is kept.
KEY_FILE = "bulk-signing.key"


def test_the_key_is_made_once_and_private(tmp_path: Path) -> None:
    key = load_key(tmp_path)
    assert len(key) == 32
    assert load_key(tmp_path) == key
    mode = (tmp_path / ".skyvault" / KEY_FILE).stat().st_mode
    assert stat.S_IMODE(mode) == 0o600
    assert [p.name for p in (tmp_path / ".skyvault").iterdir()] == [KEY_FILE]


def test_a_signature_binds_user_path_and_expiry(tmp_path: Path) -> None:
    key = load_key(tmp_path)
    signed = sign(key, "alice", "s/t/", 2_000_000_000)
    assert verify(key, signed)
    assert not verify(load_key(tmp_path / "other"), signed)
    for changed in (
        replace(signed, user="bob"),
        replace(signed, path="s/u/"),
        replace(signed, expires=2_000_000_001),
        # Another last character (the comparison is of the text, so any change counts).
        replace(
            signed,
            signature=signed.signature[:-1] + ("B" if signed.signature.endswith("A") else "A"),
        ),
    ):
        assert not verify(key, changed), changed
    # Fields cannot be shifted into one another.
    assert sign(key, "a", "b\nc", 1).signature != sign(key, "a\nb", "c", 1).signature


def test_what_a_signature_covers() -> None:
    assert covers("s/t/", "s/t") and covers("s/t/", "s/t/") and covers("s/t/", "s/t/dataset/x")
    assert not covers("s/t/", "s/tt/x") and not covers("s/t/", "s/") and not covers("s/t/", "")
    assert covers("s/t/hats.properties", "s/t/hats.properties")
    assert not covers("s/t/hats.properties", "s/t/hats.properties/x")
    assert not covers("s/t/hats.properties", "s/t/")
