"""XML escaping for metadata (Python strings) and for whole Arrow string columns."""

from __future__ import annotations

import re

import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["attr", "escape_attribute", "escape_column", "escape_text", "info"]

# Characters XML 1.0 forbids anywhere in a document, even as character references: C0
# controls other than tab, newline and carriage return, lone surrogates, U+FFFE and U+FFFF.
# They become U+FFFD REPLACEMENT CHARACTER so that one bad value cannot break a document.
_FORBIDDEN = "[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]"
_FORBIDDEN_RE = re.compile(_FORBIDDEN)
_FORBIDDEN_RE2 = "[\\x{00}-\\x{08}\\x{0B}\\x{0C}\\x{0E}-\\x{1F}\\x{FFFE}\\x{FFFF}]"


def escape_text(value: str) -> str:
    """``value`` as XML character data (element content).

    ``&``, ``<`` and ``>`` become entity references; a carriage return becomes ``&#13;``
    so that XML end-of-line normalisation does not turn it into a newline; characters that
    XML 1.0 cannot carry at all become U+FFFD.
    """
    value = _FORBIDDEN_RE.sub("\ufffd", value)
    return (
        value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\r", "&#13;")
    )


def escape_attribute(value: str) -> str:
    """``value`` as the content of a double-quoted XML attribute.

    Besides what :func:`escape_text` does, double quotes are escaped and tab and newline
    become character references so that attribute-value normalisation keeps them.
    """
    return escape_text(value).replace('"', "&quot;").replace("\n", "&#10;").replace("\t", "&#9;")


def attr(name: str, value: str | None) -> str:
    """`` name="value"`` (with a leading space), or nothing when ``value`` is None."""
    if value is None:
        return ""
    return f' {name}="{escape_attribute(value)}"'


def info(name: str, value: str, content: str | None = None) -> str:
    """An ``<INFO>`` element (and a newline); ``content``, when given, is its text."""
    head = f"<INFO{attr('name', name)}{attr('value', value)}"
    if content is None:
        return head + "/>\n"
    return f"{head}>{escape_text(content)}</INFO>\n"


def escape_column(values: pa.Array) -> pa.Array:
    """An Arrow string column escaped as XML character data, element by element.

    Vectorised with Arrow compute kernels; nulls stay null.
    """
    if pc.any(pc.match_substring_regex(values, _FORBIDDEN_RE2)).as_py():
        values = pc.replace_substring_regex(values, _FORBIDDEN_RE2, "\ufffd")
    for old, new in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ("\r", "&#13;")):
        if pc.any(pc.match_substring(values, old)).as_py():
            values = pc.replace_substring(values, old, new)
    return values
