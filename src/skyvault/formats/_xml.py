"""The one XML writer: escaping for metadata and Arrow string columns, and a small
element builder for the service's documents (UWS, VOSI, DALI examples, landing pages).

Every document the service writes goes through here.  :class:`Element` holds a tag, its
attributes and its content; :func:`xml_document` writes a tree with the namespaces declared
once on the root, and :func:`html_document` writes an HTML page.  Text and attribute values
are always escaped (:func:`escape_text`, :func:`escape_attribute`), characters XML 1.0
cannot carry become U+FFFD, and a tag or attribute whose prefix is not declared is refused,
so no value a client sent or an ingested file held can make a document unreadable.  The
VOTable writers stream their rows and write their headers as text, but with the same
escaping.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import TypeAlias, final

import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "Element",
    "attr",
    "escape_attribute",
    "escape_column",
    "escape_text",
    "html_document",
    "info",
    "xml_document",
]

# Characters XML 1.0 forbids anywhere in a document, even as character references: C0
# controls other than tab, newline and carriage return, lone surrogates, U+FFFE and U+FFFF.
# They become U+FFFD REPLACEMENT CHARACTER so that one bad value cannot break a document.
_FORBIDDEN = "[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]"
_FORBIDDEN_RE = re.compile(_FORBIDDEN)
_FORBIDDEN_RE2 = "[\\x{00}-\\x{08}\\x{0B}\\x{0C}\\x{0E}-\\x{1F}\\x{FFFE}\\x{FFFF}]"
# Whether a value needs any change at all (most do not: one search instead of five passes).
_TEXT_SPECIAL_RE = re.compile(_FORBIDDEN[:-1] + "&<>\r]")
_ATTRIBUTE_SPECIAL_RE = re.compile(_FORBIDDEN[:-1] + '&<>\r"\n\t]')


def escape_text(value: str) -> str:
    """``value`` as XML character data (element content).

    ``&``, ``<`` and ``>`` become entity references; a carriage return becomes ``&#13;``
    so that XML end-of-line normalisation does not turn it into a newline; characters that
    XML 1.0 cannot carry at all become U+FFFD.
    """
    if _TEXT_SPECIAL_RE.search(value) is None:
        return value
    value = _FORBIDDEN_RE.sub("\ufffd", value)
    return (
        value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\r", "&#13;")
    )


def escape_attribute(value: str) -> str:
    """``value`` as the content of a double-quoted XML attribute.

    Besides what :func:`escape_text` does, double quotes are escaped and tab and newline
    become character references so that attribute-value normalisation keeps them.
    """
    if _ATTRIBUTE_SPECIAL_RE.search(value) is None:
        return value
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


# --- the element builder ----------------------------------------------------------------

AttributeValue: TypeAlias = "str | int | bool | None"
Child: TypeAlias = "Element | str | None"
Content: TypeAlias = "Child | Iterable[Child]"

#: HTML elements that have no end tag (written ``<meta .../>`` in an HTML page).
_VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta"})
#: HTML elements whose content is raw text, which escaping would change: not written here.
_RAW_TEXT = frozenset({"script", "style"})
# An XML name, optionally with one prefix (Namespaces in XML 1.0 "QName"), ASCII only: every
# tag and attribute name comes from skyvault's own code.
_QNAME_RE = re.compile(r"(?:([A-Za-z_][\w.-]*):)?[A-Za-z_][\w.-]*", re.ASCII)


@final
class Element:
    """One element: ``tag`` (``prefix:name`` or ``name``), attributes and content.

    Content is text (escaped when written) and elements, in order; ``None`` and empty
    strings are left out, and an iterable of them is flattened one level, so optional
    children and generated lists read naturally::

        Element("uws:parameters", (Element("uws:parameter", v, attrs={"id": k}) for k, v in ps))

    ``attrs`` values are text, integers, or booleans (written ``true``/``false``, as XML
    Schema spells them); a ``None`` value leaves the attribute out.  Namespace declarations
    are not attributes: :func:`xml_document` writes them on the root.
    """

    __slots__ = ("attributes", "children", "has_text", "tag")

    def __init__(
        self, tag: str, *content: Content, attrs: Mapping[str, AttributeValue] | None = None
    ) -> None:
        self.tag = tag
        self.attributes: dict[str, str] = {}
        if attrs:
            for name, value in attrs.items():
                if value is None:
                    continue
                if value is True or value is False:
                    self.attributes[name] = "true" if value else "false"
                else:
                    self.attributes[name] = str(value)
        children: list[Element | str] = []
        has_text = False
        for item in content:
            if isinstance(item, Element):
                children.append(item)
            elif isinstance(item, str):
                if item:
                    children.append(item)
                    has_text = True
            elif item is not None:
                for child in item:
                    if isinstance(child, Element):
                        children.append(child)
                    elif child:
                        children.append(child)
                        has_text = True
        self.children = children
        #: Whether any content is text (then nothing is indented inside this element).
        self.has_text = has_text

    def __repr__(self) -> str:
        return f"Element({self.tag!r}, {len(self.children)} children)"


def xml_document(
    root: Element,
    namespaces: Mapping[str, str] | None = None,
    *,
    doctype: str | None = None,
    indent: str = "  ",
) -> str:
    """``root`` as an XML 1.0 document in UTF-8 (declaration included).

    Parameters
    ----------
    root
        The document element.
    namespaces
        Prefix → namespace URI, declared once on the root (the prefix ``""`` is the default
        namespace).  A tag or attribute with a prefix not declared here is a ValueError.
    doctype
        A document type declaration written after the XML declaration.
    indent
        Elements whose content is elements only are written one child per line, indented
        by this per level; text and mixed content are written as they are (no whitespace
        is added where it would change a value).
    """
    declared = dict(namespaces or {})
    prefixes = frozenset(declared) | {"", "xml"}
    xmlns = {("xmlns:" + p if p else "xmlns"): uri for p, uri in declared.items()}
    out = ['<?xml version="1.0" encoding="UTF-8"?>\n']
    if doctype is not None:
        out.append(doctype + "\n")
    _write(root, out, indent, 0, prefixes, xmlns, html=False)
    out.append("\n")
    return "".join(out)


def html_document(root: Element, *, indent: str = "") -> str:
    """``root`` (an ``html`` element) as an HTML page: ``<!DOCTYPE html>``, the tree, with
    empty elements written ``<p></p>`` (only void elements such as ``meta`` end in
    ``/>``).  ``script`` and ``style`` elements are refused: their content is not escaped in
    HTML, so it cannot be written safely from text."""
    out = ["<!DOCTYPE html>\n"]
    _write(root, out, indent or None, 0, frozenset({""}), None, html=True)
    out.append("\n")
    return "".join(out)


#: The names already checked, with their prefix (code writes a few dozen distinct names).
_NAMES: dict[str, str] = {}


def _prefix(name: str) -> str:
    """The prefix of the tag or attribute ``name`` (``""`` for none); a ValueError when
    ``name`` is not an XML name."""
    prefix = _NAMES.get(name)
    if prefix is not None:
        return prefix
    match = _QNAME_RE.fullmatch(name)
    if match is None:
        raise ValueError(f"{name!r} is not an element or attribute name")
    prefix = match.group(1) or ""
    if "xmlns" in (name, prefix):
        raise ValueError(f"{name!r} is not an attribute: xml_document declares namespaces")
    if len(_NAMES) < 4096:
        _NAMES[name] = prefix
    return prefix


def _write(
    element: Element,
    out: list[str],
    indent: str | None,
    depth: int,
    prefixes: frozenset[str],
    xmlns: Mapping[str, str] | None,
    *,
    html: bool,
) -> None:
    """Append ``element`` to ``out``; ``indent`` is None inside text and mixed content,
    ``xmlns`` holds the namespace declarations (of the root only)."""
    tag = element.tag
    prefix = _NAMES.get(tag)
    if (prefix if prefix is not None else _prefix(tag)) not in prefixes:
        raise ValueError(f"the namespace prefix of <{tag}> is not declared")
    if html and tag in _RAW_TEXT:
        raise ValueError(f"<{tag}> cannot be written from text")
    start = "<" + tag
    if xmlns:
        for name, uri in xmlns.items():
            start += f' {name}="{escape_attribute(uri)}"'
    if element.attributes:
        for name, value in element.attributes.items():
            if _prefix(name) not in prefixes:
                raise ValueError(f"the namespace prefix of {name} on <{tag}> is not declared")
            start += f' {name}="{escape_attribute(value)}"'
    children = element.children
    if not children:
        out.append(start + (f"></{tag}>" if html and tag not in _VOID else "/>"))
        return
    if len(children) == 1 and type(children[0]) is str:  # the common case: text only
        out.append(f"{start}>{escape_text(children[0])}</{tag}>")
        return
    out.append(start + ">")
    if indent is not None and not element.has_text:
        inner = "\n" + indent * (depth + 1)
        for child in children:
            out.append(inner)
            if isinstance(child, Element):  # always: no text here
                _write(child, out, indent, depth + 1, prefixes, None, html=html)
        out.append("\n" + indent * depth)
    else:
        for item in children:
            if isinstance(item, str):
                out.append(escape_text(item))
            else:
                _write(item, out, None, depth + 1, prefixes, None, html=html)
    out.append(f"</{tag}>")
