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
from skyvault.formats.votable import InputParam, ServiceDescriptor
from skyvault.images.sia import OBSCORE_TABLE, SIA_STANDARD_ID, parse_sia, sia_query
from skyvault.service.params import TapQueryParams

__all__ = ["self_description", "sia_capabilities_document", "sia_capability", "sia_tap_params"]

_CAPABILITIES = {
    "vosi": "http://www.ivoa.net/xml/VOSICapabilities/v1.0",
    "xsi": "http://www.w3.org/2001/XMLSchema-instance",
    "vs": "http://www.ivoa.net/xml/VODataService/v1.1",
}


#: The {query} parameters as the self-description declares them (SIA 2.0 §3.1.2; one POS
#: as text and intervals of 2 numbers, the forms DALI's xtypes allow, which votlint checks).
_INPUTS = (
    InputParam("POS", ucd="pos.outline;obs",
               description="CIRCLE ra dec radius, RANGE ra1 ra2 dec1 dec2 (-Inf/+Inf open) or "
               "POLYGON ra1 dec1 ra2 dec2 ... (ICRS degrees)"),
    InputParam("BAND", "double", "2", "interval", "m", "em.wl",
               "wavelength interval meeting [em_min, em_max]"),
    InputParam("TIME", "double", "2", "interval", "d", "time.epoch",
               "MJD interval meeting [t_min, t_max]"),
    InputParam("POL", ucd="meta.code;phys.polarization", description="a polarisation state"),
    InputParam("FOV", "double", "2", "interval", "deg", "phys.angSize;instr.fov",
               "interval holding s_fov"),
    InputParam("SPATRES", "double", "2", "interval", "arcsec", "pos.angResolution",
               "interval holding s_resolution"),
    InputParam("EXPTIME", "double", "2", "interval", "s", "time.duration;obs.exposure",
               "interval holding t_exptime"),
    InputParam("TIMERES", "double", "2", "interval", "s", "time.resolution",
               "interval holding t_resolution"),
    InputParam("SPECRP", "double", "2", "interval", None, "spect.resolution",
               "interval holding em_res_power"),
    InputParam("ID", ucd="meta.ref.ivoid", description="obs_publisher_did (any case)"),
    InputParam("COLLECTION", ucd="meta.id", description="obs_collection"),
    InputParam("FACILITY", ucd="meta.id;instr.tel", description="facility_name"),
    InputParam("INSTRUMENT", ucd="meta.id;instr", description="instrument_name"),
    InputParam("DPTYPE", ucd="meta.code.class", description="dataproduct_type"),
    InputParam("CALIB", "int", None, None, None, "meta.code;obs.calib",
               "calib_level, 0 to 4"),
    InputParam("TARGET", ucd="meta.id;src", description="target_name"),
    InputParam("FORMAT", ucd="meta.code.mime", description="access_format"),
    InputParam("MAXREC", "int", None, None, None, "meta.number",
               "rows at most (0: this description and the columns only)"),
)  # fmt: skip


def self_description(query_url: str) -> ServiceDescriptor:
    """The ``RESOURCE name="this"`` describing the {query} service (SIA 2.0 §3.1.2)."""
    return ServiceDescriptor(
        standard_id=SIA_STANDARD_ID,
        access_url=query_url,
        params=(),
        description="SIA 2.0 query over the ObsCore records of the collections you may read",
        resource_id="_sv_sia",
        inputs=_INPUTS,
        name="this",
    )


def sia_tap_params(
    params: Mapping[str, Sequence[str]],
    settings: Settings,
    table: str = OBSCORE_TABLE,
    query_url: str | None = None,
) -> TapQueryParams:
    """The query of a SIA request over ``table``, as TAP query parameters; with
    ``query_url``, its VOTable result describes the service (:func:`self_description`).

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
        () if query_url is None else (self_description(query_url),),
        SIA_STANDARD_ID,
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
