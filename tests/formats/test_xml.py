"""The one XML writer (formats/_xml): whatever the values hold, the documents are XML."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from skyvault.formats._xml import Element, html_document, xml_document

NS = {"a": "urn:a", "xsi": "http://www.w3.org/2001/XMLSchema-instance"}
#: Markup, an entity, the end of a CDATA section, quotes, CR/LF/tab, C0 controls XML 1.0
#: cannot carry, a lone surrogate and a letter outside the BMP.
HOSTILE = "<b>&amp; ]]> \"q\" 'a' \r\n\tx\x00\x01\x08\x0b\x0c\x1f \ud800 \U0001d518 \ufffe"
FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def read_back(value: str) -> str:
    """What a parser reads: the characters XML 1.0 cannot carry as U+FFFD."""
    return FORBIDDEN.sub("\ufffd", value)


def test_hostile_text_and_attributes_come_back_as_written() -> None:
    root = Element(
        "a:root",
        Element("a:text", HOSTILE),
        Element("a:empty", attrs={"note": HOSTILE, "xsi:nil": True}),
        Element("a:mixed", "before ", Element("a:inner", HOSTILE), " after"),
        attrs={"id": HOSTILE},
    )
    document = xml_document(root, NS)
    assert document.startswith('<?xml version="1.0" encoding="UTF-8"?>\n<a:root xmlns:a="urn:a"')
    parsed = ET.fromstring(document.encode("utf-8"))
    assert parsed.get("id") == read_back(HOSTILE)
    assert parsed.findtext("a:text", namespaces=NS) == read_back(HOSTILE)
    empty = parsed.find("a:empty", NS)
    assert empty is not None and empty.get("note") == read_back(HOSTILE)
    assert empty.get(f"{{{NS['xsi']}}}nil") == "true"
    mixed = parsed.find("a:mixed", NS)
    assert mixed is not None
    assert "".join(mixed.itertext()) == "before " + read_back(HOSTILE) + " after"


@hypothesis_settings(max_examples=200, deadline=None)
@given(st.text(st.characters(codec=None)), st.text(st.characters(codec=None)))
def test_any_text_makes_a_well_formed_document(text: str, value: str) -> None:
    document = xml_document(Element("a:x", Element("a:y", text, attrs={"v": value})), NS)
    y = ET.fromstring(document.encode("utf-8"))[0]
    assert (y.text or "") == read_back(text) and y.get("v") == read_back(value)


def test_layout_indents_element_content_only() -> None:
    root = Element(
        "a:list",
        Element("a:item", "one"),
        Element("a:item", "two ", Element("a:b", "bold"), Element("a:c", Element("a:d", "x"))),
        Element("a:none"),
    )
    assert xml_document(root, {"a": "urn:a"}).split("\n")[1:] == [
        '<a:list xmlns:a="urn:a">',
        "  <a:item>one</a:item>",
        "  <a:item>two <a:b>bold</a:b><a:c><a:d>x</a:d></a:c></a:item>",
        "  <a:none/>",
        "</a:list>",
        "",
    ]


def test_none_and_empty_content_and_attributes_are_left_out() -> None:
    element = Element("x", None, "", [None, Element("y"), ""], attrs={"a": None, "b": 0, "c": ""})
    assert xml_document(element).split("\n")[1:] == ['<x b="0" c="">', "  <y/>", "</x>", ""]
    assert xml_document(Element("x", attrs={"t": True, "f": False})).endswith(
        '<x t="true" f="false"/>\n'
    )


def test_namespaces_are_declared_once_on_the_root() -> None:
    root = Element("a:r", Element("a:s", Element("t", attrs={"xsi:type": "a:T"})))
    document = xml_document(root, NS)
    assert document.count("xmlns:a=") == 1 and document.count("xmlns:xsi=") == 1
    assert document.index("xmlns:") < document.index("<a:s")


@pytest.mark.parametrize(
    ("root", "message"),
    [
        (Element("b:r"), "prefix of <b:r> is not declared"),
        (Element("a:r", Element("b:s")), "prefix of <b:s>"),
        (Element("a:r", attrs={"b:x": "1"}), "prefix of b:x on <a:r>"),
        (Element("a:r", attrs={"xmlns:b": "urn:b"}), "'xmlns:b' is not"),
        (Element("a:r", attrs={"xmlns": "urn:b"}), "'xmlns' is not"),
        (Element("a r"), "'a r' is not"),
        (Element("a:r", attrs={'x="1" y': "2"}), "is not an element or attribute name"),
    ],
)
def test_undeclared_prefixes_and_bad_names_are_refused(root: Element, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        xml_document(root, {"a": "urn:a"})


class _Tags(HTMLParser):
    """The start tags, end tags and text an HTML parser sees."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.events.append(("start", tag))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.events.append(("void", tag))

    def handle_endtag(self, tag: str) -> None:
        self.events.append(("end", tag))

    def handle_data(self, data: str) -> None:
        self.events.append(("text", data))


def test_html_pages_close_every_element_and_escape_text() -> None:
    page = html_document(
        Element(
            "html",
            Element("head", Element("meta", attrs={"charset": "utf-8"})),
            Element("body", Element("td"), Element("a", HOSTILE, attrs={"href": HOSTILE})),
        )
    )
    assert page.startswith('<!DOCTYPE html>\n<html><head><meta charset="utf-8"/></head>')
    assert "<td></td>" in page  # "<td/>" would open a cell an HTML parser never closes
    parser = _Tags()
    parser.feed(page)
    tags = [e for e in parser.events if e[0] != "text"]
    assert tags == [
        ("start", "html"), ("start", "head"), ("void", "meta"), ("end", "head"),
        ("start", "body"), ("start", "td"), ("end", "td"), ("start", "a"), ("end", "a"),
        ("end", "body"), ("end", "html"),
    ]  # fmt: skip
    assert ("text", read_back(HOSTILE)) in parser.events


def test_html_refuses_raw_text_elements() -> None:
    with pytest.raises(ValueError, match="<script> cannot be written"):
        html_document(Element("html", Element("script", "alert(1)")))
