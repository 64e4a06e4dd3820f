"""Names a user may have meant: the closest spellings, and per-band column families."""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence

__all__ = ["column_suggestions", "did_you_mean", "suggestion_text"]


def _closest(name: str, candidates: Sequence[str]) -> str | None:
    lowered = {c.lower(): c for c in candidates}
    close = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.6)
    return lowered[close[0]] if close else None


def did_you_mean(name: str, candidates: Sequence[str]) -> str:
    close = _closest(name, candidates)
    return f'; did you mean "{close}"?' if close else ""


#: ``<band>_<name>``: Rubin's per-band columns (``r_psfFlux``, ``g_cModelFluxErr``,
#: ``i_ap12Flux_flag``).
_BANDED = re.compile(r"([A-Za-z])_([A-Za-z0-9_]+)\Z")
#: Words that qualify the quantity a column name ends with (``FluxErr`` is an error of a flux).
_MODIFIERS = frozenset({"err", "sigma", "flag", "flags", "cov", "var", "chi2"})


def _family(name: str) -> tuple[str, ...] | None:
    """What a per-band column measures, with its band: ``r_calibFlux`` and ``r_cModelFlux``
    are ``("r", "flux")``, ``g_psfFluxErr`` is ``("g", "flux", "err")``."""
    banded = _BANDED.match(name)
    if banded is None:
        return None
    band, rest = banded.groups()
    head, *tail = rest.split("_")
    words = [w.lower() for w in re.findall(r"[A-Z]+[a-z0-9]*|[a-z0-9]+", head)]
    modifiers: list[str] = []
    while len(words) > 1 and words[-1] in _MODIFIERS:
        modifiers.insert(0, words.pop())
    if len(words) < 2:  # no measurement before the quantity: not a family name
        return None
    return (band.lower(), words[-1], *modifiers, *(t.lower() for t in tail))


#: Most names one suggestion lists.
_MAX_SUGGESTIONS = 6


def column_suggestions(name: str, candidates: Sequence[str]) -> list[str]:
    """Column names ``name`` may have meant, best first.

    The same name in another case first; then the columns that hold the name as a word
    (``ra`` -> ``coord_ra``, not the nearer spelling ``z_ra``: the per-band columns are not
    the position a user asks for); then, for a per-band name (``r_calibFlux``), the
    columns of the same band and family (``r_psfFlux``, ``r_cModelFlux`` ...: what the user
    was after is a flux of that band, not the nearest spelling); else the nearest spelling,
    of the same band first.
    """
    same = [c for c in candidates if c.lower() == name.lower() and c != name]
    if same:
        return same[:1]
    if "_" not in name:  # ``ra`` -> ``coord_ra``: the name as a word of an unbanded name
        whole = [
            c
            for c in candidates
            if _BANDED.match(c) is None and name.lower() in c.lower().split("_")
        ]
        if whole:
            whole.sort(
                key=lambda c: -difflib.SequenceMatcher(None, name.lower(), c.lower()).ratio()
            )
            return whole[:_MAX_SUGGESTIONS]
    family = _family(name)
    if family is not None:
        kin = [c for c in candidates if _family(c) == family]
        if kin:
            kin.sort(key=lambda c: -difflib.SequenceMatcher(None, name.lower(), c.lower()).ratio())
            return kin[:_MAX_SUGGESTIONS]
    banded = _BANDED.match(name)
    if banded is not None:  # the nearest spelling of the same band before any other band's
        band = banded.group(1).lower()
        same_band = [c for c in candidates if c.lower().startswith(f"{band}_")]
        close = _closest(name, same_band)
        if close:
            return [close]
    close = _closest(name, candidates)
    return [close] if close else []


def suggestion_text(names: list[str]) -> str:
    """``did you mean "x"?`` or ``did you mean one of "x", "y"?`` (empty without names)."""
    if not names:
        return ""
    if len(names) == 1:
        return f'did you mean "{names[0]}"?'
    return "did you mean one of " + ", ".join(f'"{n}"' for n in names) + "?"
