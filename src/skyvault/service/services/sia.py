"""SIA 2.0 as a service: the query a request asks for, and the SIA capabilities document.

:func:`sia_tap_params` checks a request's parameters (:func:`skyvault.images.sia.parse_sia`)
and writes its ADQL over ``ivoa.ObsCore`` (:func:`skyvault.images.sia.sia_query`) as the
:class:`~skyvault.service.params.TapQueryParams` a TAP ``/sync`` query would be: the handler
runs it exactly as one (the caller's running slot, visible tables, memory budget, streaming,
audit line), so SIA and ObsTAP give the same rows for the same constraints.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from skyvault.config import Settings
from skyvault.formats._xml import Element, xml_document
from skyvault.formats.output import find_output_format
from skyvault.images.sia import OBSCORE_TABLE, SIA_STANDARD_ID, parse_sia, sia_query
from skyvault.service.params import TapQueryParams

__all__ = ["sia_capabilities_document", "sia_capability", "sia_tap_params"]

_CAPABILITIES = {
    "vosi": "http://www.ivoa.net/xml/VOSICapabilities/v1.0",
    "xsi": "http://www.w3.org/2001/XMLSchema-instance",
    "vs": "http://www.ivoa.net/xml/VODataService/v1.1",
}


def sia_tap_params(
    params: Mapping[str, Sequence[str]], settings: Settings, table: str = OBSCORE_TABLE
) -> TapQueryParams:
    """The query of a SIA request over ``table``, as TAP query parameters.

    Raises
    ------
    UsageError
        A malformed parameter (named in the message) or an unknown RESPONSEFORMAT.
    """
    request = parse_sia(
        params, maxrec_default=settings.maxrec_default, maxrec_limit=settings.maxrec_limit
    )
    return TapQueryParams(
        sia_query(request, table),
        "ADQL",
        request.maxrec,
        find_output_format(request.response_format),
        request.maxrec_requested,
    )


def sia_capability(query_url: str) -> Element:
    """The ``{query}`` capability (SIA 2.0 §2.4): ``ivo://ivoa.net/std/SIA#query-2.0``."""
    interface = Element(
        "interface",
        Element("accessURL", query_url, attrs={"use": "full"}),
        attrs={"xsi:type": "vs:ParamHTTP", "role": "std", "version": "2.0"},
    )
    return Element("capability", interface, attrs={"standardID": SIA_STANDARD_ID})


def _simple(standard_id: str, url: str) -> Element:
    interface = Element(
        "interface",
        Element("accessURL", url, attrs={"use": "full"}),
        attrs={"xsi:type": "vs:ParamHTTP"},
    )
    return Element("capability", interface, attrs={"standardID": standard_id})


def sia_capabilities_document(sia_base: str) -> str:
    """VOSI capabilities of the SIA service at ``sia_base`` (its ``{query}``, capabilities
    and availability are siblings there, as SIA 2.0 §2 asks)."""
    root = Element(
        "vosi:capabilities",
        _simple("ivo://ivoa.net/std/VOSI#capabilities", f"{sia_base}/capabilities"),
        _simple("ivo://ivoa.net/std/VOSI#availability", f"{sia_base}/availability"),
        sia_capability(f"{sia_base}/query"),
    )
    return xml_document(root, _CAPABILITIES)
