"""The IVOA XML schemas of tests/data/xsd/, loaded without the network.

:func:`ivoa_schema` builds a schema from its stored file, with every schema it imports
(VOResource, VODataService, TAPRegExt) taken from the same directory; :func:`assert_valid`
checks a document is well-formed XML and valid against it.  See tests/data/xsd/README.md
for where each file comes from.
"""

from __future__ import annotations

import warnings
import xml.etree.ElementTree as ET
from functools import cache
from pathlib import Path
from typing import Any

import pytest

__all__ = ["XSD_DIR", "assert_valid", "ivoa_schema"]

XSD_DIR = Path(__file__).parent / "data" / "xsd"

#: Namespace → stored schema, for the imports the schemas make by URL.
_LOCATIONS = (
    ("http://www.ivoa.net/xml/VOResource/v1.0", "VOResource-v1.1.xsd"),
    ("http://www.ivoa.net/xml/VODataService/v1.1", "VODataService-v1.2.xsd"),
    ("http://www.ivoa.net/xml/TAPRegExt/v1.0", "TAPRegExt-v1.0.xsd"),
)
#: The one import left out: VODataService's coverage elements (never written by skyvault)
#: use STC 1.30, a schema xmlschema cannot build (README.md).
_STC = "http://www.ivoa.net/xml/STC/stc-v1.30.xsd"


@cache
def ivoa_schema(name: str) -> Any:
    """The schema stored as ``tests/data/xsd/{name}``; skips when xmlschema is missing."""
    xmlschema = pytest.importorskip("xmlschema", reason="xmlschema is in the dev extra")
    locations = [(ns, str((XSD_DIR / file).resolve())) for ns, file in _LOCATIONS]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # allow="local": no network. "lax" lets the schema build without STC; the
        # warnings below show that STC is the only import that failed.
        schema = xmlschema.XMLSchema(
            str((XSD_DIR / name).resolve()), allow="local", locations=locations, validation="lax"
        )
    failed = [str(w.message) for w in caught if "Import of namespace" in str(w.message)]
    assert all(_STC in message for message in failed), failed
    assert not schema.all_errors, schema.all_errors
    return schema


def assert_valid(document: str | bytes, schema: str) -> ET.Element:
    """``document`` parsed (it must be well-formed XML 1.0), after checking it is valid
    against the stored schema ``schema``."""
    data = document.encode("utf-8") if isinstance(document, str) else document
    root = ET.fromstring(data)
    errors = [f"{e.path}: {e.reason}" for e in ivoa_schema(schema).iter_errors(data.decode())]
    assert not errors, errors
    return root
