"""VOSI documents are valid against their schemas (VOSI 1.1, VODataService 1.2, TAPRegExt
1.0) and stay well-formed whatever the ingested metadata holds."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from fastapi.testclient import TestClient

from skyvault.adql import LanguageFeature, language_features
from skyvault.catalog.metadata import ColumnMeta, TableMeta
from skyvault.catalog.tap_schema import ForeignKey
from skyvault.config import Settings
from skyvault.formats.output import OUTPUT_FORMATS
from skyvault.service.services.vosi import (
    availability_document,
    capabilities_document,
    table_document,
    tableset_document,
)
from tests.xsd import assert_valid

ODD = 'flux \x01 in <Jy> & "peak" \x1f \U0001d518\r'
#: Markup, an entity, the end of a CDATA section, quotes, CR/LF/tab, C0 controls, a lone
#: surrogate and a letter outside the BMP: what an ingested file's metadata may hold.
HOSTILE = "a\x00b\x01c\x1f <x> &amp; ]]> \"q\" 'a' \r\n\tend \ud800 \U0001d518"


def read_back(value: str) -> str:
    """What a parser reads: the characters XML 1.0 cannot carry as U+FFFD."""
    return "".join("\ufffd" if c in "\x00\x01\x1f\ud800" else c for c in value)


TABLES = "VOSITables-v1.1.xsd"
CAPABILITIES = "VOSICapabilities-v1.0.xsd"
AVAILABILITY = "VOSIAvailability-v1.0.xsd"


def test_tables_documents_are_xml_with_control_characters_in_metadata() -> None:
    meta = TableMeta(
        schema="s",
        name="t",
        kind="plain",
        columns=(ColumnMeta("f", "double", unit="Jy", description=ODD),),
        nrows=1,
        description=ODD,
    )
    for document in (table_document(meta), tableset_document([meta])):
        root = ET.fromstring(document.encode("utf-8"))
        texts = [e.text for e in root.iter("description")]
        assert texts and all(
            t == ODD.replace("\x01", "\ufffd").replace("\x1f", "\ufffd") for t in texts
        )


@pytest.mark.parametrize(
    ("path", "schema"),
    [
        ("/tap/availability", AVAILABILITY),
        ("/tap/capabilities", CAPABILITIES),
        ("/tap/tables", TABLES),
        ("/tap/tables?detail=min", TABLES),
        ("/tap/tables/dp02_dc2_catalogs.Object", TABLES),
        ("/tap/tables/TAP_SCHEMA.columns", TABLES),
    ],
)
def test_service_documents_are_valid(client: TestClient, path: str, schema: str) -> None:
    r = client.get(path)
    assert r.status_code == 200, r.text
    root = assert_valid(r.content, schema)
    assert root.tag.startswith("{http://www.ivoa.net/xml/VOSI")


def _hostile_table() -> tuple[TableMeta, ForeignKey]:
    columns = (
        ColumnMeta(
            "id",
            "long",
            description=HOSTILE,
            unit=HOSTILE,
            ucd=HOSTILE,
            utype=HOSTILE,
            indexed=True,
            std=True,
            nullable=False,
        ),
        ColumnMeta(HOSTILE, "char", arraysize="*", xtype=HOSTILE, description=HOSTILE),
    )
    meta = TableMeta(
        schema="s<&>",
        name=HOSTILE,
        kind="plain",
        columns=columns,
        nrows=1,
        description=HOSTILE,
        primary_key="id",
    )
    key = ForeignKey(
        key_id=HOSTILE,
        from_table=meta.qualified_name,
        target_table=HOSTILE,
        columns=((HOSTILE, "id"),),
        description=HOSTILE,
    )
    return meta, key


def test_tables_documents_with_hostile_metadata_are_valid() -> None:
    meta, key = _hostile_table()
    documents = [
        table_document(meta, [key]),
        tableset_document([meta], keys=[key], schema_descriptions={meta.schema: HOSTILE}),
        tableset_document([meta], columns=False, keys=[key]),
    ]
    for document in documents:
        root = assert_valid(document, TABLES)
        descriptions = [e.text for e in root.iter("description")]
        assert descriptions and set(descriptions) == {read_back(HOSTILE)}
    table = ET.fromstring(documents[0].encode())
    assert [c.findtext("name") for c in table.iter("column")] == ["id", read_back(HOSTILE)]
    assert table.findtext("name") == read_back(meta.qualified_name)
    [first, second] = table.iter("column")
    assert first.get("std") == "true" and [f.text for f in first.iter("flag")] == [
        "indexed",
        "primary",
    ]
    data_type = second.find("dataType")
    assert data_type is not None and data_type.get("extendedType") == read_back(HOSTILE)
    [fk] = table.iter("foreignKey")
    assert fk.findtext("targetTable") == read_back(HOSTILE)
    assert fk.findtext("fkColumn/fromColumn") == read_back(HOSTILE)


def test_capabilities_and_availability_with_hostile_values_are_valid() -> None:
    features = [
        *language_features(),
        LanguageFeature("ivo://ivoa.net/std/TAPRegExt#features-udf", HOSTILE, HOSTILE),
    ]
    document = capabilities_document("http://h/tap?a=1&b=2", Settings(), OUTPUT_FORMATS, features)
    root = assert_valid(document, CAPABILITIES)
    assert read_back(HOSTILE) in [e.text for e in root.iter("form")]
    assert "http://h/tap?a=1&b=2" in [e.text for e in root.iter("accessURL")]
    for available in (True, False):
        root = assert_valid(availability_document(available, HOSTILE), AVAILABILITY)
        [note] = [e.text for e in root if e.tag.endswith("note")]
        assert note == read_back(HOSTILE)
