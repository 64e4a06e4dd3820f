"""VOSI documents stay well-formed XML whatever the ingested metadata holds."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from skyvault.catalog.metadata import ColumnMeta, TableMeta
from skyvault.service.services.vosi import table_document, tableset_document

ODD = 'flux \x01 in <Jy> & "peak" \x1f \U0001d518\r'


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
