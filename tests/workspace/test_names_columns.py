"""Names and table definitions: what is accepted, and the 400 for everything else."""

from __future__ import annotations

import pyarrow as pa
import pytest

from skyvault.errors import WorkspaceError
from skyvault.workspace.columns import (
    arrow_type,
    column,
    parse_definition,
    parse_vosi_table,
    parse_votable_definition,
)
from skyvault.workspace.names import UserTableName, schema_candidates

VOSI = """<?xml version="1.0" encoding="UTF-8"?>
<vosi:table xmlns:vosi="http://www.ivoa.net/xml/VOSITables/v1.0"
    xmlns:vs="http://www.ivoa.net/xml/VODataService/v1.1"
    xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <name>user_alice.targets</name>
  <description>my   targets</description>
  <column><name>id</name><dataType xsi:type="vs:VOTableType">long</dataType>
    <flag>indexed</flag><flag>principal</flag></column>
  <column><name>name</name><description>target name</description>
    <dataType xsi:type="vs:VOTableType" arraysize="16*">char</dataType></column>
  <column><name>ra</name><unit>deg</unit><ucd>pos.eq.ra;meta.main</ucd>
    <dataType xsi:type="vs:VOTableType">double</dataType></column>
  <column><name>flux</name><unit>mJy</unit>
    <dataType xsi:type="vs:VOTableType" arraysize="5">float</dataType></column>
  <column><name>seen</name><dataType xsi:type="vs:TAPType">TIMESTAMP</dataType></column>
</vosi:table>"""


def test_a_vosi_document_keeps_every_column_property() -> None:
    d = parse_vosi_table(VOSI.encode())
    assert d.description == "my targets"
    by = {c.name: c for c in d.columns}
    assert [c.name for c in d.columns] == ["id", "name", "ra", "flux", "seen"]
    assert [c.column_index for c in d.columns] == [0, 1, 2, 3, 4]
    assert by["id"].indexed and by["id"].principal and by["id"].datatype == "long"
    assert by["name"].arraysize == "16*" and by["name"].description == "target name"
    assert by["ra"].unit == "deg" and by["ra"].ucd == "pos.eq.ra;meta.main"
    assert arrow_type(by["flux"]) == pa.list_(pa.float32(), 5)
    assert arrow_type(by["seen"]) == pa.timestamp("us")
    assert by["seen"].xtype == "timestamp"


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"not xml at all", "not well-formed XML"),
        (b"<tableset/>", "root element is <tableset>"),
        (b"<table></table>", "no columns"),
        (
            b"<table><column><name>x</name><dataType>quaternion</dataType></column></table>",
            "'quaternion' is not a VOTable datatype",
        ),
        (
            b"<table><column><name>x</name><dataType>bit</dataType></column></table>",
            "datatype bit is not supported",
        ),
        (b"<table><column><name>x</name></column></table>", "column x has no <dataType>"),
        (
            b"<table><column><name>bad name</name><dataType>int</dataType></column></table>",
            "'bad name' is not a plain identifier",
        ),
        (
            b"<table><column><name>a</name><dataType>int</dataType></column>"
            b"<column><name>A</name><dataType>int</dataType></column></table>",
            "differ only in case",
        ),
        (
            b"<table><column><name>_healpix_29</name><dataType>long</dataType></column></table>",
            "reserved",
        ),
        (
            b'<table><column><name>m</name><dataType arraysize="2x3">int</dataType></column>'
            b"</table>",
            "arraysize '2x3' is not supported",
        ),
        (
            b'<?xml version="1.0"?><!DOCTYPE t [<!ENTITY a "aaaa">]><table/>',
            "DOCTYPE or XML entities",
        ),
    ],
)
def test_a_bad_vosi_document_is_a_400_that_says_what_is_wrong(body: bytes, says: str) -> None:
    with pytest.raises(WorkspaceError, match=says) as caught:
        parse_vosi_table(body)
    assert caught.value.http_status == 400


def test_a_votable_definition_gives_its_fields_and_rows() -> None:
    votable = b"""<?xml version="1.0"?>
<VOTABLE version="1.4" xmlns="http://www.ivoa.net/xml/VOTable/v1.3"><RESOURCE><TABLE>
<FIELD name="id" datatype="int"/>
<FIELD name="mag" datatype="float" unit="mag" ucd="phot.mag"><DESCRIPTION>V</DESCRIPTION></FIELD>
<FIELD name="label" datatype="char" arraysize="*"/>
<DATA><TABLEDATA><TR><TD>1</TD><TD>10.5</TD><TD>a</TD></TR>
<TR><TD>2</TD><TD></TD><TD>b</TD></TR></TABLEDATA></DATA>
</TABLE></RESOURCE></VOTABLE>"""
    d = parse_votable_definition(votable)
    assert [(c.name, c.datatype, c.unit, c.ucd) for c in d.columns] == [
        ("id", "int", None, None),
        ("mag", "float", "mag", "phot.mag"),
        ("label", "char", None, None),
    ]
    assert d.columns[1].description == "V"
    assert d.rows is not None and d.rows.column("id").to_pylist() == [1, 2]
    fields_only = votable.split(b"<DATA>")[0] + b"</TABLE></RESOURCE></VOTABLE>"
    assert parse_definition("application/x-votable+xml", fields_only).rows is None


def test_a_definition_of_an_unknown_type_is_refused() -> None:
    with pytest.raises(WorkspaceError, match="application/json"):
        parse_definition("application/json", b"{}")


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("../etc.passwd", "is not a table name"),
        ("user_alice/../x.t", "is not a table name"),
        ('user_alice."t"', "is not a table name"),
        ("user_alice.t;drop", "is not a table name"),
        ("a.b.c", "is not a table name"),
        ("user_alice.", "is not a table name"),
        ("targets", "has no schema"),
        ("user_alice." + "t" * 65, "is too long"),
        ("TAP_SCHEMA.tables", "schema of the service"),
        ("ivoa.obscore", "schema of the service"),
        ("tap_upload.x", "schema of the service"),
        ("user_alice.t\x00", "is not a table name"),
    ],
)
def test_names_that_are_not_identifiers_or_escape_are_refused(text: str, says: str) -> None:
    with pytest.raises(WorkspaceError, match=says):
        UserTableName.parse(text)


def test_schema_names_are_identifiers_made_from_the_user_name() -> None:
    assert schema_candidates("alice")[0] == "user_alice"
    assert schema_candidates("Dr.Who@example-org")[:2] == [
        "user_dr_who_example_org",
        "user_dr_who_example_org_2",
    ]


def test_column_rejects_a_bad_unit_type_combination() -> None:
    with pytest.raises(WorkspaceError, match="arrays of boolean"):
        column("flags", "boolean", arraysize="*")
