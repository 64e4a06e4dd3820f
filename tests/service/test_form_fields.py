"""A URL-encoded form body is split by :func:`split_urlencoded` exactly as Starlette's form
parser reads it, or handed to that parser (``None``) when it could judge it differently."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.datastructures import Headers
from starlette.formparsers import FormParser

from skyvault.service.params import FORM_MAX_FIELDS, URLENCODED, split_urlencoded


def _starlette(body: bytes, pieces: int = 1) -> list[tuple[str, str]]:
    async def stream() -> AsyncIterator[bytes]:
        step = max(1, len(body) // pieces)
        for i in range(0, len(body), step):
            yield body[i : i + step]

    async def parse() -> list[tuple[str, str]]:
        form = await FormParser(Headers({"content-type": URLENCODED}), stream()).parse()
        return [(k, v) for k, v in form.multi_items() if isinstance(v, str)]

    return asyncio.run(parse())


# Bytes that matter to the parsers (separators, escapes, '+', Latin-1 and UTF-8 bytes),
# plus ordinary ones.
_ALPHABET = st.sampled_from(
    [
        *(b"&", b"=", b"+", b"%", b"%20", b"%3D", b"%26", b"%C3%A9", b"%zz", b";"),
        *(b"a", b"Q", b"1", b"\xe9", b"\xc3\xa9", b" ", b"'"),
    ]
)


@settings(max_examples=400, deadline=None)
@given(st.lists(_ALPHABET, max_size=30).map(b"".join), st.integers(1, 4))
def test_fields_are_those_starlette_reads(body: bytes, pieces: int) -> None:
    fields = split_urlencoded(body)
    if fields is not None:
        assert fields == _starlette(body, pieces)


def test_a_tap_request_takes_the_quick_split() -> None:
    body = (
        b"REQUEST=doQuery&LANG=ADQL&QUERY=SELECT+TOP+1+%2A+FROM+t+WHERE+"
        b"CONTAINS%28POINT%28%27ICRS%27%2C+ra%2C+dec%29%2C+CIRCLE%28%27ICRS%27%2C+1%2C+2%2C+0.1%29%29"
        b"%3D1&RESPONSEFORMAT=votable%2Fb2&name=%C3%A9t%C3%A9&empty="
    )
    fields = split_urlencoded(body)
    assert fields is not None
    assert fields == _starlette(body)
    assert dict(fields)["name"] == "été"


def test_bodies_the_parser_judges_itself() -> None:
    # Fields without '=', empty fields and stray separators: Starlette's rules, not ours.
    for body in (b"", b"a", b"a=1&b", b"a=1&&b=2", b"&a=1", b"a=1&"):
        assert split_urlencoded(body) is None
    assert split_urlencoded(b"&".join([b"a=1"] * (FORM_MAX_FIELDS + 1))) is None
    assert split_urlencoded(b"q=" + b"x" * (1024 * 1024)) is None
