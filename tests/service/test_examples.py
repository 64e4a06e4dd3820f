"""The DALI examples document: XHTML+RDFa that pyvo and taplint read, whatever it holds."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from fastapi.testclient import TestClient

from skyvault.service.services import examples
from skyvault.service.services.examples import EXAMPLES, Example, examples_document

XHTML = "{http://www.w3.org/1999/xhtml}"
HOSTILE = "a\x00b <x> &amp; ]]> \"q\" 'a' \r\n\tend \ud800 \U0001d518"


def _properties(root: ET.Element, name: str) -> list[str]:
    """The text of every element with ``property="name"``, as pyvo reads the queries."""
    return ["".join(e.itertext()) for e in root.findall(f'.//*[@property="{name}"]')]


def test_examples_as_pyvo_reads_them(client: TestClient) -> None:
    r = client.get("/tap/examples")
    assert r.status_code == 200 and r.headers["content-type"] == "application/xhtml+xml"
    assert r.text.startswith('<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE html PUBLIC')
    root = ET.fromstring(r.content)
    assert root.tag == f"{XHTML}html" and root.get("version") == "XHTML+RDFa 1.1"
    assert _properties(root, "query") == [e.query for e in EXAMPLES]
    assert _properties(root, "name") == [e.name for e in EXAMPLES]
    assert _properties(root, "table") == [t for e in EXAMPLES for t in e.tables]
    [vocab] = [d for d in root.iter(f"{XHTML}div") if d.get("vocab")]
    assert vocab.get("vocab") == "http://www.ivoa.net/rdf/examples#"
    cards = [d for d in vocab if d.get("typeof") == "example"]
    assert [(d.get("id"), d.get("resource")) for d in cards] == [
        (e.id, f"#{e.id}") for e in EXAMPLES
    ]


def test_hostile_text_still_makes_an_xml_document(monkeypatch: pytest.MonkeyPatch) -> None:
    odd = Example(HOSTILE, HOSTILE, HOSTILE, HOSTILE, (HOSTILE, "TAP_SCHEMA.tables"))
    monkeypatch.setattr(examples, "EXAMPLES", (odd,))
    root = ET.fromstring(examples_document(HOSTILE, visible=[HOSTILE]).encode("utf-8"))
    read = HOSTILE.replace("\x00", "\ufffd").replace("\ud800", "\ufffd")
    assert root.findtext(f"{XHTML}head/{XHTML}title") == read
    assert _properties(root, "query") == [read]
    assert _properties(root, "table") == [read, "TAP_SCHEMA.tables"]
    [card] = [d for d in root.iter(f"{XHTML}div") if d.get("typeof") == "example"]
    assert card.get("id") == read and card.get("resource") == "#" + read
