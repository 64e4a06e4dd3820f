"""ObsCore 1.1: the columns of an ObsCore table, and an ObsCore record from a FITS header.

:data:`COLUMNS` is the one description of the ObsCore columns skyvault stores: the 30
mandatory ones and the optional ones an image archive can fill, each with its type, unit,
UCD, utype and description as the IVOA standard gives them (ObsCore 1.1, REC 2017-05-09,
section 3 table 1 and appendix C's TAP_SCHEMA tables; utypes carry the ``obscore:``
prefix the standard says is omitted from its tables).  :data:`EXTRA_COLUMNS` are
skyvault's own columns beside them (where the image is in the archive).

:func:`obscore_record` derives one record from an image HDU's header cards and its WCS:

* ``s_region`` is the polygon of the WCS footprint's four corners (the pixel edges, as
  astropy's ``WCS.calc_footprint(center=False)``), counter-clockwise as seen from inside;
  ``s_ra``/``s_dec`` the world position of the central pixel; ``s_fov`` the diameter of
  the smallest circle about that centre holding the corners;
* ``s_resolution`` (FWHM, arcsec) from a PSF keyword (:data:`PSF_KEYWORDS`, arcsec) or,
  without one, the pixel scale; ``s_pixel_scale`` the pixel scale;
* ``t_min`` from ``MJD-OBS`` (else ``DATE-OBS``/``DATE-BEG``), ``t_max`` from ``MJD-END``
  (else ``DATE-END``, else ``t_min`` plus the exposure), ``t_exptime`` from ``EXPTIME``
  (else ``EXPOSURE``, ``XPOSURE``); dates are read in the header's own time scale;
* ``em_min``/``em_max`` from the filter (``BAND`` else ``FILTER``, ``FILTNAM``) looked up
  in a band table (:data:`LSST_BANDS` by default, configurable), with ``em_res_power``
  the band's centre over its width;
* ``instrument_name`` from ``INSTRUME``, ``facility_name`` from ``TELESCOP`` (else
  ``OBSERVAT``), ``target_name`` from ``OBJECT``; keywords missing from an extension are
  taken from the primary header (the usual inheritance of multi-extension files).
"""

from __future__ import annotations

import csv
import datetime
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from numpy.typing import NDArray

from skyvault.catalog.metadata import TableMeta
from skyvault.errors import UsageError

__all__ = [
    "COLUMNS",
    "EXTENSION_COLUMNS",
    "EXTRA_COLUMNS",
    "LSST_BANDS",
    "PSF_KEYWORDS",
    "BandTable",
    "ImageFacts",
    "ObsCoreColumn",
    "is_obscore_table",
    "obscore_record",
    "obscore_schema",
    "read_band_table",
]


@dataclass(frozen=True)
class ObsCoreColumn:
    """One column of an ObsCore table, as ObsCore 1.1 describes it."""

    name: str
    type: pa.DataType
    unit: str | None
    ucd: str
    utype: str | None
    description: str
    mandatory: bool
    principal: bool = False


def _c(
    name: str,
    kind: str,
    unit: str | None,
    ucd: str,
    utype: str | None,
    description: str,
    *,
    mandatory: bool = True,
    principal: bool = False,
) -> ObsCoreColumn:
    types = {"s": pa.string(), "d": pa.float64(), "i": pa.int32(), "l": pa.int64()}
    full_utype = f"obscore:{utype}" if utype else None
    return ObsCoreColumn(
        name, types[kind], unit, ucd, full_utype, description, mandatory, principal
    )


#: The ObsCore columns stored for each image, mandatory first (in the standard's order).
COLUMNS: tuple[ObsCoreColumn, ...] = (
    _c(
        "dataproduct_type",
        "s",
        None,
        "meta.code.class",
        "ObsDataset.dataProductType",
        "Logical data product type (image etc.)",
        principal=True,
    ),
    _c(
        "calib_level",
        "i",
        None,
        "meta.code;obs.calib",
        "ObsDataset.calibLevel",
        "Calibration level {0, 1, 2, 3, 4}",
        principal=True,
    ),
    _c(
        "obs_collection",
        "s",
        None,
        "meta.id",
        "DataID.collection",
        "Name of the data collection",
        principal=True,
    ),
    _c("obs_id", "s", None, "meta.id", "DataID.observationID", "Observation ID", principal=True),
    _c(
        "obs_publisher_did",
        "s",
        None,
        "meta.ref.ivoid",
        "Curation.publisherDID",
        "Dataset identifier given by the publisher",
        principal=True,
    ),
    _c(
        "access_url",
        "s",
        None,
        "meta.ref.url",
        "Access.reference",
        "URL used to access (download) dataset",
        principal=True,
    ),
    _c(
        "access_format",
        "s",
        None,
        "meta.code.mime",
        "Access.format",
        "File content format",
        principal=True,
    ),
    _c(
        "access_estsize",
        "l",
        "kbyte",
        "phys.size;meta.file",
        "Access.size",
        "Estimated size of dataset in kilo bytes",
        principal=True,
    ),
    _c(
        "target_name",
        "s",
        None,
        "meta.id;src",
        "Target.name",
        "Astronomical object observed, if any",
        principal=True,
    ),
    _c(
        "s_ra",
        "d",
        "deg",
        "pos.eq.ra",
        "Char.SpatialAxis.Coverage.Location.Coord.Position2D.Value2.C1",
        "Central right ascension, ICRS",
        principal=True,
    ),
    _c(
        "s_dec",
        "d",
        "deg",
        "pos.eq.dec",
        "Char.SpatialAxis.Coverage.Location.Coord.Position2D.Value2.C2",
        "Central declination, ICRS",
        principal=True,
    ),
    _c(
        "s_fov",
        "d",
        "deg",
        "phys.angSize;instr.fov",
        "Char.SpatialAxis.Coverage.Bounds.Extent.diameter",
        "Diameter (bounds) of the covered region",
        principal=True,
    ),
    _c(
        "s_region",
        "s",
        None,
        "pos.outline;obs.field",
        "Char.SpatialAxis.Coverage.Support.Area",
        "Sky region covered by the data product (expressed in ICRS frame)",
        principal=True,
    ),
    _c(
        "s_resolution",
        "d",
        "arcsec",
        "pos.angResolution",
        "Char.SpatialAxis.Resolution.Refval.value",
        "Spatial resolution of data as FWHM",
        principal=True,
    ),
    _c(
        "s_xel1",
        "l",
        None,
        "meta.number",
        "Char.SpatialAxis.numBins1",
        "Number of elements along the first spatial axis",
    ),
    _c(
        "s_xel2",
        "l",
        None,
        "meta.number",
        "Char.SpatialAxis.numBins2",
        "Number of elements along the second spatial axis",
    ),
    _c(
        "t_min",
        "d",
        "d",
        "time.start;obs.exposure",
        "Char.TimeAxis.Coverage.Bounds.Limits.StartTime",
        "Start time in MJD",
        principal=True,
    ),
    _c(
        "t_max",
        "d",
        "d",
        "time.end;obs.exposure",
        "Char.TimeAxis.Coverage.Bounds.Limits.StopTime",
        "Stop time in MJD",
        principal=True,
    ),
    _c(
        "t_exptime",
        "d",
        "s",
        "time.duration;obs.exposure",
        "Char.TimeAxis.Coverage.Support.Extent",
        "Total exposure time",
        principal=True,
    ),
    _c(
        "t_resolution",
        "d",
        "s",
        "time.resolution",
        "Char.TimeAxis.Resolution.Refval.value",
        "Temporal resolution",
    ),
    _c(
        "t_xel",
        "l",
        None,
        "meta.number",
        "Char.TimeAxis.numBins",
        "Number of elements along the time axis",
    ),
    _c(
        "em_min",
        "d",
        "m",
        "em.wl;stat.min",
        "Char.SpectralAxis.Coverage.Bounds.Limits.LoLimit",
        "Start in spectral coordinates",
        principal=True,
    ),
    _c(
        "em_max",
        "d",
        "m",
        "em.wl;stat.max",
        "Char.SpectralAxis.Coverage.Bounds.Limits.HiLimit",
        "Stop in spectral coordinates",
        principal=True,
    ),
    _c(
        "em_res_power",
        "d",
        None,
        "spect.resolution",
        "Char.SpectralAxis.Resolution.ResolPower.refVal",
        "Spectral resolving power",
    ),
    _c(
        "em_xel",
        "l",
        None,
        "meta.number",
        "Char.SpectralAxis.numBins",
        "Number of elements along the spectral axis",
    ),
    _c(
        "o_ucd",
        "s",
        None,
        "meta.ucd",
        "Char.ObservableAxis.ucd",
        "UCD of observable (e.g. phot.flux.density, phot.count, etc.)",
    ),
    _c(
        "pol_states",
        "s",
        None,
        "meta.code;phys.polarization",
        "Char.PolarizationAxis.stateList",
        "List of polarization states or NULL if not applicable",
    ),
    _c(
        "pol_xel",
        "l",
        None,
        "meta.number",
        "Char.PolarizationAxis.numBins",
        "Number of polarization samples",
    ),
    _c(
        "facility_name",
        "s",
        None,
        "meta.id;instr.tel",
        "Provenance.ObsConfig.Facility.name",
        "Name of the facility used for this observation",
        principal=True,
    ),
    _c(
        "instrument_name",
        "s",
        None,
        "meta.id;instr",
        "Provenance.ObsConfig.Instrument.name",
        "Name of the instrument used for this observation",
        principal=True,
    ),
    # Optional columns (ObsCore 1.1 appendix C, table of optional fields).
    _c(
        "dataproduct_subtype",
        "s",
        None,
        "meta.code.class",
        "ObsDataset.dataProductSubtype",
        "Data product specific type",
        mandatory=False,
    ),
    _c(
        "obs_title",
        "s",
        None,
        "meta.title;obs",
        "DataID.title",
        "Brief description of dataset in free format",
        mandatory=False,
    ),
    _c(
        "obs_creation_date",
        "s",
        None,
        "time;meta.dataset",
        "DataID.date",
        "Date when the dataset was created (ISO 8601)",
        mandatory=False,
    ),
    _c(
        "publisher_id",
        "s",
        None,
        "meta.ref.ivoid",
        "Curation.publisherID",
        "IVOA-ID for the Publisher",
        mandatory=False,
    ),
    _c(
        "s_pixel_scale",
        "d",
        "arcsec",
        "phys.angSize;instr.pixel",
        "Char.SpatialAxis.Sampling.RefVal.SamplingPeriod",
        "Sampling period in world coordinate units along the spatial axis",
        mandatory=False,
    ),
    _c(
        "s_calib_status",
        "s",
        None,
        "meta.code.qual",
        "Char.SpatialAxis.calibrationStatus",
        "Type of calibration along the spatial axis",
        mandatory=False,
    ),
    _c(
        "em_ucd",
        "s",
        None,
        "meta.ucd",
        "Char.SpectralAxis.ucd",
        "Nature of the spectral axis",
        mandatory=False,
    ),
    _c(
        "em_unit",
        "s",
        None,
        "meta.unit",
        "Char.SpectralAxis.unit",
        "Units along the spectral axis",
        mandatory=False,
    ),
    _c(
        "o_unit",
        "s",
        None,
        "meta.unit",
        "Char.ObservableAxis.unit",
        "Units used for the observable values",
        mandatory=False,
    ),
)

#: skyvault's columns beside ObsCore's: the band name, and where the image is stored
#: (a name inside the collection's archive, never a server path) and its HDU.
EXTRA_COLUMNS: tuple[ObsCoreColumn, ...] = (
    ObsCoreColumn("band", pa.string(), None, "instr.bandpass", None,
                  "Filter band of the image (from BAND or FILTER)", False, True),
    ObsCoreColumn("image_file", pa.string(), None, "meta.file", None,
                  "The image's file inside the collection's archive", False),
    ObsCoreColumn("image_hdu", pa.int32(), None, "meta.number", None,
                  "HDU of the image in its file (0 = primary)", False),
)  # fmt: skip


#: Extension columns of Rubin's ObsCore table (DP0.2's ``ivoa.ObsCore``), so that its
#: tutorials' queries run unchanged; filled from the header cards BAND (else FILTER),
#: FILTER, VISIT, DETECTOR, CCDVISIT, TRACT and PATCH (NULL when missing).
EXTENSION_COLUMNS: tuple[ObsCoreColumn, ...] = (
    ObsCoreColumn("lsst_band", pa.string(), None, "instr.bandpass", None,
                  "Abstract filter band (u, g, r, i, z, y)", False, True),
    ObsCoreColumn("lsst_filter", pa.string(), None, "instr.filter", None,
                  "Physical filter", False),
    ObsCoreColumn("lsst_visit", pa.int64(), None, "meta.id;obs", None,
                  "Visit of the exposure", False),
    ObsCoreColumn("lsst_detector", pa.int64(), None, "meta.id;instr.det", None,
                  "Detector of the exposure", False),
    ObsCoreColumn("lsst_ccdvisitid", pa.int64(), None, "meta.id", None,
                  "Visit and detector in one id (CcdVisit.ccdVisitId)", False),
    ObsCoreColumn("lsst_tract", pa.int64(), None, "meta.id", None,
                  "Sky-map tract of a coadd", False),
    ObsCoreColumn("lsst_patch", pa.int64(), None, "meta.id", None,
                  "Sky-map patch of a coadd", False),
)  # fmt: skip


def is_obscore_table(meta: TableMeta) -> bool:
    """Whether a published table is a collection's ObsCore table (what ``ivoa.ObsCore`` is
    to be the union of): every mandatory column there with the standard's utype."""
    utypes = {c.name: c.utype for c in meta.columns}
    return all(utypes.get(c.name) == c.utype for c in COLUMNS if c.mandatory)


def obscore_schema() -> pa.Schema:
    """The Arrow schema of a collection's ObsCore table (before ingest adds its index)."""
    columns = (*COLUMNS, *EXTENSION_COLUMNS, *EXTRA_COLUMNS)
    return pa.schema([pa.field(c.name, c.type) for c in columns])


# --- band table ---------------------------------------------------------------------------

#: A band table: band name -> (em_min, em_max) in metres.
BandTable = Mapping[str, tuple[float, float]]

#: Default band table: approximate wavelength ranges (m) of the LSST filters u g r i z y,
#: the edges of their throughput curves rounded to the nanometre (as Rubin's DP0.2 ObsCore
#: gives them).  Replace with ``--bands FILE`` (CSV ``band,em_min,em_max`` in metres).
LSST_BANDS: dict[str, tuple[float, float]] = {
    "u": (330e-9, 400e-9),
    "g": (402e-9, 552e-9),
    "r": (552e-9, 691e-9),
    "i": (691e-9, 818e-9),
    "z": (818e-9, 922e-9),
    "y": (970e-9, 1060e-9),
}


def read_band_table(path: Path) -> dict[str, tuple[float, float]]:
    """A band table from a CSV file with the header ``band,em_min,em_max`` (metres)."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise UsageError(f"cannot read the band table {path}: {exc.strerror}") from None
    bands: dict[str, tuple[float, float]] = {}
    reader = csv.DictReader(text.splitlines())
    if reader.fieldnames is None or {"band", "em_min", "em_max"} - set(reader.fieldnames):
        raise UsageError(
            f"band table {path} needs the columns band,em_min,em_max",
            hint="one line per band, wavelengths in metres, e.g. r,552e-9,691e-9",
        )
    for line, row in enumerate(reader, start=2):
        try:
            low, high = float(row["em_min"]), float(row["em_max"])
        except (TypeError, ValueError):
            raise UsageError(f"band table {path}, line {line}: em_min/em_max not numbers") from None
        if not (0 < low < high < 1):
            raise UsageError(
                f"band table {path}, line {line}: need 0 < em_min < em_max (metres)",
                hint="wavelengths are in metres: 552 nm is 552e-9",
            )
        bands[row["band"].strip()] = (low, high)
    if not bands:
        raise UsageError(f"band table {path} has no bands")
    return bands


def _band_of(value: str, bands: BandTable) -> str | None:
    """The band-table entry a BAND/FILTER value names: exact, then case-folded, then its
    first part (``r_sim_1.4`` and ``LSST r`` name ``r``)."""
    text = value.strip()
    if text in bands:
        return text
    folded = {k.lower(): k for k in bands}
    if text.lower() in folded:
        return folded[text.lower()]
    for part in text.replace("_", " ").replace("-", " ").split():
        if part in bands:
            return part
    return None


# --- the record ---------------------------------------------------------------------------

#: Header keywords holding the PSF's FWHM in arcseconds, in order of preference.
PSF_KEYWORDS = ("PSF_FWHM", "PSFFWHM", "FWHM", "SEEING")

_MJD_EPOCH = datetime.datetime(1858, 11, 17)


@dataclass(frozen=True)
class ImageFacts:
    """What the record needs besides the cards: identity and the WCS's sky positions.

    ``corners`` are the world positions (degrees) of the four pixel-edge corners in
    ``calc_footprint`` order, ``centre`` that of the central pixel, ``pixel_scale`` in
    arcseconds, ``shape`` the lengths of the two celestial axes.
    """

    collection: str
    obs_id: str
    publisher_did: str
    image_file: str
    hdu: int
    file_bytes: int
    corners: NDArray[np.float64]
    centre: tuple[float, float]
    pixel_scale: float
    shape: tuple[int, int]
    naxis: int


def _integer(text: str | None) -> int | None:
    """An integer card value, or None (missing or not an integer)."""
    if text is None:
        return None
    try:
        exact = int(text.strip())
    except ValueError:
        pass
    else:
        return exact if -(2**63) <= exact < 2**63 else None
    number = _number(text)
    if number is None or not math.isfinite(number) or abs(number) >= 2**63:
        return None
    if number != int(number):
        return None
    return int(number)


def _number(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = float(text.replace("D", "E").replace("d", "e"))
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _mjd(text: str | None) -> float | None:
    """MJD of an ISO-8601 date (``2023-01-02T03:04:05.6``), in the date's own scale."""
    if not text:
        return None
    try:
        moment = datetime.datetime.fromisoformat(text.strip().rstrip("Z"))
    except ValueError:
        return None
    if moment.tzinfo is not None:
        moment = moment.astimezone(datetime.UTC).replace(tzinfo=None)
    delta = moment - _MJD_EPOCH
    return delta.days + (delta.seconds + delta.microseconds / 1e6) / 86400.0


def _unit(lon: float, lat: float) -> tuple[float, float, float]:
    a, d = math.radians(lon), math.radians(lat)
    return (math.cos(d) * math.cos(a), math.cos(d) * math.sin(a), math.sin(d))


def _cross(
    a: tuple[float, float, float], b: tuple[float, float, float]
) -> tuple[float, float, float]:
    return (a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0])


def _dot(a: tuple[float, float, float], b: tuple[float, float, float]) -> float:
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


def counter_clockwise(corners: NDArray[np.float64]) -> NDArray[np.float64]:
    """The polygon's vertices ordered counter-clockwise as seen from inside the sphere
    (the orientation DALI and ADQL polygons use): reversed when they turn the other way.

    (Plain floats: for four vertices NumPy's per-call cost is most of the time.)
    """
    v = [_unit(lon, lat) for lon, lat in corners.tolist()]
    centre = (sum(p[0] for p in v), sum(p[1] for p in v), sum(p[2] for p in v))
    # The sum over the edges of (v_i x v_i+1) . centre: positive when they turn anticlockwise.
    turn = sum(_dot(_cross(v[i], v[(i + 1) % len(v)]), centre) for i in range(len(v)))
    return corners if turn > 0 else corners[::-1]


def stcs_polygon(corners: NDArray[np.float64]) -> str:
    """``POLYGON ICRS ra1 dec1 ...`` (STC-S, ADQL's REGION string) of the corners."""
    ordered = counter_clockwise(corners)
    return "POLYGON ICRS " + " ".join(
        f"{lon % 360.0:.8f} {lat:.8f}" for lon, lat in ordered.tolist()
    )


def _fov(centre: tuple[float, float], corners: NDArray[np.float64]) -> float:
    """Diameter (degrees) of the circle about ``centre`` through the farthest corner."""
    c = _unit(*centre)
    widest = 0.0
    for lon, lat in corners.tolist():
        v = _unit(lon, lat)
        cross = _cross(c, v)
        angle = math.atan2(math.sqrt(_dot(cross, cross)), _dot(c, v))
        widest = max(widest, angle)
    return 2.0 * math.degrees(widest)


def obscore_record(
    facts: ImageFacts,
    cards: Mapping[str, str | None],
    primary: Mapping[str, str | None] | None = None,
    *,
    bands: BandTable = LSST_BANDS,
    calib_level: int = 2,
    subtype: str | None = None,
    o_ucd: str = "phot.count",
) -> dict[str, Any]:
    """The ObsCore record (a dict keyed by column name) of one image HDU.

    ``cards`` maps the HDU's keywords to their value text (strings unquoted); ``primary``
    is the primary header's, consulted for keywords the HDU lacks.
    """

    def get(*keys: str) -> str | None:
        for source in (cards, primary or {}):
            for key in keys:
                value = source.get(key)
                if value not in (None, ""):
                    return value
        return None

    exptime = _number(get("EXPTIME", "EXPOSURE", "XPOSURE"))
    t_min = _number(get("MJD-OBS", "MJD-BEG")) or _mjd(get("DATE-OBS", "DATE-BEG"))
    t_max = _number(get("MJD-END")) or _mjd(get("DATE-END"))
    if t_max is None and t_min is not None:
        t_max = t_min + (exptime or 0.0) / 86400.0
    psf = next((v for v in (_number(get(k)) for k in PSF_KEYWORDS) if v and v > 0), None)
    band_value = get("BAND", "FILTER", "FILTNAM", "FILTER1")
    band = _band_of(band_value, bands) if band_value else None
    em_min = em_max = em_res_power = None
    if band is not None:
        em_min, em_max = bands[band]
        em_res_power = (em_min + em_max) / 2.0 / (em_max - em_min)
    corners = np.asarray(facts.corners, dtype=np.float64)
    return {
        "dataproduct_type": "cube" if facts.naxis > 2 else "image",
        "calib_level": calib_level,
        "obs_collection": facts.collection,
        "obs_id": facts.obs_id,
        "obs_publisher_did": facts.publisher_did,
        "access_url": None,
        "access_format": "image/fits",
        "access_estsize": max(1, math.ceil(facts.file_bytes / 1024)),
        "target_name": get("OBJECT"),
        "s_ra": facts.centre[0] % 360.0,
        "s_dec": facts.centre[1],
        "s_fov": _fov(facts.centre, corners),
        "s_region": stcs_polygon(corners),
        "s_resolution": psf if psf is not None else facts.pixel_scale,
        "s_xel1": facts.shape[0],
        "s_xel2": facts.shape[1],
        "t_min": t_min,
        "t_max": t_max,
        "t_exptime": exptime,
        "t_resolution": exptime,
        "t_xel": 1 if t_min is not None else None,
        "em_min": em_min,
        "em_max": em_max,
        "em_res_power": em_res_power,
        "em_xel": 1 if band is not None else None,
        "o_ucd": o_ucd,
        "pol_states": None,
        "pol_xel": None,
        "facility_name": get("TELESCOP", "OBSERVAT"),
        "instrument_name": get("INSTRUME"),
        "dataproduct_subtype": subtype,
        "obs_title": (get("OBJECT") and f"{facts.obs_id} ({get('OBJECT')})") or facts.obs_id,
        "obs_creation_date": get("DATE"),
        "publisher_id": facts.publisher_did.split("?", 1)[0],
        "s_pixel_scale": facts.pixel_scale,
        "s_calib_status": "calibrated",
        "em_ucd": "em.wl" if band is not None else None,
        "em_unit": "m" if band is not None else None,
        "o_unit": get("BUNIT"),
        "lsst_band": band if band is not None else band_value,
        "lsst_filter": get("FILTER", "PHYSFILT"),
        "lsst_visit": _integer(get("VISIT")),
        "lsst_detector": _integer(get("DETECTOR")),
        "lsst_ccdvisitid": _integer(get("CCDVISIT")),
        "lsst_tract": _integer(get("TRACT")),
        "lsst_patch": _integer(get("PATCH")),
        "band": band if band is not None else band_value,
        "image_file": facts.image_file,
        "image_hdu": facts.hdu,
    }


def records_table(records: Sequence[Mapping[str, Any]]) -> pa.Table:
    """The records as an Arrow table with :func:`obscore_schema`."""
    schema = obscore_schema()
    arrays = [pa.array([r.get(f.name) for r in records], f.type) for f in schema]
    return pa.Table.from_arrays(arrays, schema=schema)
