"""Every other DP0.2 column: values from the name, unit and type of a column, and the row's
true properties.

The demo's specific generators (:mod:`.objects`, :mod:`.epochs`, :mod:`.truth`) compute the
columns whose values must agree with other tables or with each other (ids, positions,
the fluxes and extendedness behind the star/galaxy split, light curves, matches).  This
module completes a table with the hundreds of columns DP0.2 declares besides, by families
recognised from the column name, each from the same :class:`Rows` so that they stay
consistent with the object:

* fluxes (``*Flux``, ``*_instFlux``): the true flux in the column's band times the share a
  measurement of that kind recovers from a Gaussian galaxy convolved with the PSF
  (PSF fit, aperture of the given radius, GaaP aperture, Kron, cModel, bulge/disk), plus
  noise; ``*FluxErr`` is the matching error for the depth of the data (always positive);
* second moments and shapes (``*xx``/``*yy``/``*xy``, ``*PSF``, ``*Round``, ``e1``/``e2``)
  from the galaxy's size, ellipticity and position angle and the PSF;
* positions (``ra``/``decl``, ``x``/``y``, ``centroid_*``) at the row's position, with
  centroid noise; their errors from the signal to noise;
* flags (booleans) False but for a small share; labels (``skymap``, ``band``,
  ``physical_filter``, ``instrument``) DP0.2's values;
* everything else by what the quantity is (calibrations, WCS matrices, areas, counts).

Every column's values are finite unless the quantity is undefined for the row.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
from numpy.typing import NDArray

from skyvault.demo.schema import BANDS, arrow_schema, felis_unit
from skyvault.demo.sky import FloatArray, IntArray

__all__ = ["AB_ZERO_POINT_NJY", "Rows", "complete_table", "flux_error", "nanojansky"]

#: AB magnitude of 1 nJy.
AB_ZERO_POINT_NJY = 31.4
PIXEL_SCALE_ARCSEC = 0.2
_DEG_PER_PIXEL = PIXEL_SCALE_ARCSEC / 3600.0
_FLAG_SHARE = 0.01
#: Typical visits per band over five years in the deep-drilling-free DC2 wide survey.
_VISITS_PER_BAND = np.array([8.0, 11.0, 23.0, 23.0, 20.0, 20.0])


def nanojansky(mag: FloatArray) -> FloatArray:
    """AB magnitude to flux density in nJy."""
    return np.asarray(10.0 ** (-0.4 * (mag - AB_ZERO_POINT_NJY)), dtype=np.float64)


def flux_error(flux: FloatArray, depth: FloatArray) -> FloatArray:
    """One-sigma error (nJy) of a flux measured to a five-sigma point-source ``depth``:
    sky noise, source shot noise, and a 0.2 % calibration floor."""
    f5 = nanojansky(depth)
    sky = f5 / 5.0
    shot = np.maximum(flux, 0.0) / (18.0 * f5)
    return np.asarray(np.sqrt(sky**2 * (1.0 + shot) + (0.002 * flux) ** 2), dtype=np.float64)


@dataclass
class Rows:
    """What the generic columns of a run of rows derive from.

    ``flux`` holds true fluxes in nJy, one column per band (``u``..``y``) for a table with
    per-band columns, or a single column (the row's own band) for single-epoch rows;
    ``depth`` the five-sigma point-source depth (AB mag) of the data, of the same shape.
    ``size2`` is the squared Gaussian sigma of the light in pixels (0 for a point source),
    ``psf_sigma`` the PSF's Gaussian sigma in pixels; ``x``/``y`` pixel coordinates.
    """

    ra: FloatArray
    dec: FloatArray
    flux: FloatArray
    depth: FloatArray
    size2: FloatArray
    psf_sigma: FloatArray
    ellipticity: FloatArray
    angle: FloatArray
    x: FloatArray
    y: FloatArray
    rng: np.random.Generator
    band: IntArray | None = None
    njy_per_count: FloatArray | None = None
    rotation_deg: FloatArray | None = None
    _cache: dict[str, FloatArray] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return int(self.ra.size)

    def flux_in(self, band: int | None) -> FloatArray:
        return np.asarray(self.flux[:, 0 if band is None else band])

    def depth_in(self, band: int | None) -> FloatArray:
        return np.asarray(self.depth[:, 0 if band is None else band])

    def calibration(self) -> FloatArray:
        """nJy per count of the image the rows were measured on."""
        if self.njy_per_count is not None:
            return self.njy_per_count
        return np.full(self.n, 10.0 ** (-0.4 * (32.0 - AB_ZERO_POINT_NJY)))

    def band_of(self, band: int | None) -> IntArray:
        if band is not None:
            return np.full(self.n, band, dtype=np.int64)
        if self.band is not None:
            return self.band
        return np.full(self.n, BANDS.index("r"), dtype=np.int64)


_BAND_PREFIX = re.compile(r"^([ugrizy])_(.+)$")


def complete_table(
    table: str, known: Mapping[str, object], rows: Rows | None, n: int | None = None
) -> pa.Table:
    """Demo ``table`` with the ``known`` columns as given and every other column generated.

    ``rows`` may be None only when ``known`` holds every column.
    """
    schema = arrow_schema(table)
    arrays = []
    for fld in schema:
        if fld.name in known:
            values = known[fld.name]
        else:
            if rows is None:
                raise KeyError(f"{table}.{fld.name} has no value and no rows to derive it from")
            values = generate(fld.name, fld.type, felis_unit(table, fld.name), rows)
        arrays.append(_arrow(values, fld.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def _arrow(values: object, arrow_type: pa.DataType) -> pa.Array:
    if isinstance(values, pa.Array | pa.ChunkedArray):
        return values.cast(arrow_type) if values.type != arrow_type else values
    if pa.types.is_floating(arrow_type):
        arr = np.asarray(values, dtype=np.float64)
        return pa.array(arr.astype(np.float32) if arrow_type == pa.float32() else arr)
    return pa.array(values, type=arrow_type)


def generate(name: str, arrow_type: pa.DataType, unit: str, rows: Rows) -> object:
    """Values of a column known only by its name, Arrow type and unit."""
    band: int | None = None
    rest = name
    match = _BAND_PREFIX.match(name)
    if match:
        band = BANDS.index(match.group(1))
        rest = match.group(2)
    if pa.types.is_boolean(arrow_type):
        return _flag(rest, rows)
    if pa.types.is_string(arrow_type):
        return _label(rest, rows)
    # The last rule matches every name and raises for one it does not know: a column a new
    # schema version adds must get a rule, not made-up values.
    for pattern, rule in _RULES:
        found = pattern.fullmatch(rest)
        if found:
            return rule(found, band, unit, rows)
    raise KeyError(f"no rule gives values for a column named {name!r}")


# --- flags and labels --------------------------------------------------------------------

_MOSTLY_TRUE = {"detect_isPatchInner", "detect_isTractInner", "calib_detected"}


def _flag(rest: str, rows: Rows) -> NDArray[np.bool_]:
    draw = rows.rng.uniform(0.0, 1.0, rows.n)
    if rest in _MOSTLY_TRUE:
        return draw < 0.97
    return draw < _FLAG_SHARE


def _label(rest: str, rows: Rows) -> NDArray[np.str_]:
    names = np.array(BANDS)
    if rest == "skymap":
        return np.full(rows.n, "DC2")
    if rest == "instrument":
        return np.full(rows.n, "LSSTCam-imSim")
    if rest in ("band", "filterName", "refBand"):
        return names[rows.band_of(None)]
    if rest == "physical_filter":
        return np.char.add(names[rows.band_of(None)], "_sim_1.4")
    raise KeyError(f"no rule gives values for a label named {rest!r}")


# --- fluxes ------------------------------------------------------------------------------


def _total_sigma2(rows: Rows) -> FloatArray:
    return np.asarray(rows.size2 + rows.psf_sigma**2)


def _aperture_share(rows: Rows, radius_px: float) -> FloatArray:
    """Share of a Gaussian source's light inside a circular aperture of ``radius_px``."""
    return np.asarray(1.0 - np.exp(-(radius_px**2) / (2.0 * _total_sigma2(rows))))


def _psf_share(rows: Rows) -> FloatArray:
    p2 = rows.psf_sigma**2
    return np.asarray(2.0 * p2 / (2.0 * p2 + rows.size2))


def _measured(
    rows: Rows, band: int | None, share: FloatArray, area_ratio: FloatArray | float, key: str
) -> tuple[FloatArray, FloatArray]:
    """A flux measurement (value, error) recovering ``share`` of the light, cached by ``key``
    so that a value column and its error column agree."""
    if key in rows._cache:
        return rows._cache[key], rows._cache[key + "Err"]
    true = rows.flux_in(band) * share
    err = flux_error(true, rows.depth_in(band)) * np.sqrt(np.maximum(area_ratio, 1.0))
    value = true + err * rows.rng.standard_normal(rows.n)
    rows._cache[key] = value
    rows._cache[key + "Err"] = err
    return value, err


def _pick(found: re.Match[str], pair: tuple[FloatArray, FloatArray]) -> FloatArray:
    return pair[1] if found.group("err") else pair[0]


def _aperture_flux(found: re.Match[str], band: int | None, unit: str, rows: Rows) -> FloatArray:
    radius = float(found.group("radius"))
    ratio = radius**2 / (4.0 * rows.psf_sigma**2)
    key = f"{band}:ap{radius:g}"
    value = _pick(found, _measured(rows, band, _aperture_share(rows, radius), ratio, key))
    if unit == "count":
        return value / rows.calibration()
    return value


def _calib_flux(found: re.Match[str], band: int | None, unit: str, rows: Rows) -> FloatArray:
    ratio = 12.0**2 / (4.0 * rows.psf_sigma**2)
    return _pick(found, _measured(rows, band, _aperture_share(rows, 12.0), ratio, f"{band}:ap12"))


def _psf_flux(found: re.Match[str], band: int | None, unit: str, rows: Rows) -> FloatArray:
    key = f"{band}:{found.group('kind')}"
    return _pick(found, _measured(rows, band, _psf_share(rows), 1.0, key))


_TOTAL_SHARES = {"cModelFlux": 1.0, "cModelFlux_inner": 0.88, "kronFlux": 0.93, "totFlux": 1.0}


def _total_flux(found: re.Match[str], band: int | None, unit: str, rows: Rows) -> FloatArray:
    kind = found.group("kind")
    share = _TOTAL_SHARES[kind.removeprefix("free_")]
    ratio = 1.0 + rows.size2 / rows.psf_sigma**2
    key = f"{band}:{kind}"
    return _pick(found, _measured(rows, band, np.full(rows.n, share), ratio, key))


def _gaap_flux(found: re.Match[str], band: int | None, unit: str, rows: Rows) -> FloatArray:
    label = found.group("aperture")
    sigma_arcsec = 0.7 if label == "Optimal" else float(label.replace("p", "."))
    a2 = (sigma_arcsec / PIXEL_SCALE_ARCSEC) ** 2
    share = a2 / (a2 + rows.size2)
    key = f"{band}:gaap{label}"
    return _pick(found, _measured(rows, band, share, a2 / rows.psf_sigma**2, key))


def _bulge_disk_flux(found: re.Match[str], band: int | None, unit: str, rows: Rows) -> FloatArray:
    if "bulge" not in rows._cache:
        rows._cache["bulge"] = rows.rng.beta(1.5, 3.0, rows.n)
    bulge = rows._cache["bulge"]
    share = bulge if found.group("part") == "B" else 1.0 - bulge
    ratio = 1.0 + rows.size2 / rows.psf_sigma**2
    key = f"{band}:bd{found.group('part')}"
    return _pick(found, _measured(rows, band, share, ratio, key))


def _noise_flux(found: re.Match[str], band: int | None, unit: str, rows: Rows) -> FloatArray:
    """Sky and local-background estimates: zero on average, with the sky's noise."""
    err = flux_error(np.zeros(rows.n), rows.depth_in(band)) * 0.05
    if unit == "count":
        err = err / rows.calibration()
    if found.group("err"):
        return err
    return np.asarray(err * rows.rng.standard_normal(rows.n))


# --- shapes and positions ----------------------------------------------------------------


def _moments(rows: Rows, band: int | None) -> tuple[FloatArray, FloatArray, FloatArray]:
    key = f"{band}:moments"
    if key not in rows._cache:
        s2, e, a = rows.size2, rows.ellipticity, rows.angle
        p2 = rows.psf_sigma**2
        snr = np.clip(
            rows.flux_in(band) / flux_error(rows.flux_in(band), rows.depth_in(band)), 1, None
        )
        noise = rows.rng.standard_normal((3, rows.n)) * ((s2 + p2) / snr)
        rows._cache[key] = s2 * (1 + e * np.cos(2 * a)) + p2 + np.abs(noise[0])
        rows._cache[key + "yy"] = s2 * (1 - e * np.cos(2 * a)) + p2 + np.abs(noise[1])
        rows._cache[key + "xy"] = s2 * e * np.sin(2 * a) + noise[2] / 2
    return rows._cache[key], rows._cache[key + "yy"], rows._cache[key + "xy"]


def _moment(found: re.Match[str], band: int | None, unit: str, rows: Rows) -> FloatArray:
    xx, yy, xy = _moments(rows, band)
    kind = found.group("kind") or ""
    component = found.group("comp")
    p2 = rows.psf_sigma**2
    if kind in ("PSF", "DebiasedPSF"):
        value = np.where(component == "xy", 0.0, p2) + 0.0
        value = value * (1.0 + 0.01 * rows.rng.standard_normal(rows.n))
    elif kind == "Round":
        value = np.full(rows.n, 0.0) if component == "xy" else (xx + yy) / 2
    else:
        value = {"xx": xx, "yy": yy, "xy": xy}[component]
    if unit == "arcsec**2":
        value = value * PIXEL_SCALE_ARCSEC**2
    return np.asarray(value)


def _ellipticity(found: re.Match[str], band: int | None, unit: str, rows: Rows) -> FloatArray:
    e, a = rows.ellipticity, rows.angle
    part = e * (np.cos(2 * a) if found.group("comp") == "1" else np.sin(2 * a))
    return np.asarray(part + 0.02 * rows.rng.standard_normal(rows.n))


def _shape_size(found: re.Match[str], band: int | None, unit: str, rows: Rows) -> FloatArray:
    what = found.group(0)
    if what.startswith("bdRe"):
        return np.asarray(rows.size2 * (0.5 if what.endswith("B") else 1.2) + 0.01)
    if what == "hsmShapeRegauss_sigma":
        return np.asarray(rows.rng.uniform(0.25, 0.4, rows.n))
    if what == "kronRad":
        return np.asarray(2.5 * np.sqrt(_total_sigma2(rows)))
    # FWHM (pixels) of the source as observed.
    return np.asarray(2.3548 * np.sqrt(_total_sigma2(rows)))


def _snr(rows: Rows, band: int | None) -> FloatArray:
    flux = rows.flux_in(band)
    return np.asarray(np.clip(flux / flux_error(flux, rows.depth_in(band)), 1.0, None))


def _sky_position(found: re.Match[str], band: int | None, unit: str, rows: Rows) -> FloatArray:
    """RA or Dec of the row, with centroid noise of a few milliarcseconds."""
    noise = 0.7 * rows.psf_sigma * _DEG_PER_PIXEL / _snr(rows, band)
    noise = noise * rows.rng.standard_normal(rows.n)
    if found.group("axis") in ("ra", "Ra"):
        return np.asarray(rows.ra + noise / np.cos(np.radians(rows.dec)))
    return np.asarray(rows.dec + noise)


def _pixel_position(found: re.Match[str], band: int | None, unit: str, rows: Rows) -> FloatArray:
    base = rows.x if found.group("axis") == "x" else rows.y
    if found.group("err"):
        return np.asarray(np.clip(0.7 * rows.psf_sigma / _snr(rows, band), 0.002, 5.0))
    return np.asarray(
        base + 0.7 * rows.psf_sigma / _snr(rows, band) * rows.rng.standard_normal(rows.n)
    )


def _area(found: re.Match[str], band: int | None, unit: str, rows: Rows) -> object:
    what = found.group(0)
    if what == "psfFlux_area":
        return np.asarray(4.0 * np.pi * rows.psf_sigma**2)
    # Footprint: the pixels above the detection threshold, growing with brightness.
    radius = np.sqrt(_total_sigma2(rows)) * (2.0 + np.log10(_snr(rows, None)))
    return np.maximum(np.round(np.pi * radius**2), 9).astype(np.int64)


# --- everything else ---------------------------------------------------------------------


def _quantity(found: re.Match[str], band: int | None, unit: str, rows: Rows) -> object:
    what = found.group(0)
    rng, n = rows.rng, rows.n
    if what == "localPhotoCalib":
        return rows.calibration() * (1.0 + 0.002 * rng.standard_normal(n))
    if what == "localPhotoCalibErr":
        return rows.calibration() * 0.002
    if what.startswith("localWcs_CDMatrix_"):
        rot = np.radians(rows.rotation_deg if rows.rotation_deg is not None else np.zeros(n))
        i, j = what[-3], what[-1]
        cd = {
            ("1", "1"): -np.cos(rot),
            ("1", "2"): np.sin(rot),
            ("2", "1"): np.sin(rot),
            ("2", "2"): np.cos(rot),
        }[(i, j)]
        return cd * _DEG_PER_PIXEL
    if what in ("extendedness",):
        ratio = _psf_share(rows) + 0.7 * rng.standard_normal(n) / _snr(rows, band)
        return (ratio < 0.985).astype(np.float64)
    if what in ("blendedness", "blendedness_abs"):
        return np.asarray(rng.beta(0.3, 6.0, n))
    if what.endswith("Chi2") or what == "dipChi2":
        return np.asarray(rng.chisquare(3.0, n) + 0.1)
    if what == "inputCount":
        lam = _VISITS_PER_BAND[rows.band_of(band)]
        return (rng.poisson(lam) + 1).astype(np.int64)
    if what in ("jacobian_value", "psfFlux_apCorr"):
        return 1.0 + 0.005 * rng.standard_normal(n)
    if what == "psfFlux_apCorrErr":
        return np.full(n, 0.002)
    if what == "variance_value":
        sky = flux_error(np.zeros(n), rows.depth_in(band)) / rows.calibration()
        return np.asarray((sky / 10.0) ** 2)
    if what == "dipAngle":
        return rng.uniform(0.0, 180.0, n)
    if what == "dipLength":
        return np.abs(rng.normal(0.0, 0.3, n))
    if what in ("dipMeanFlux", "dipMeanFluxErr", "dipFluxDiff", "dipFluxDiffErr"):
        err = flux_error(np.zeros(n), rows.depth_in(band))
        if unit == "count":
            err = err / rows.calibration()
        return err if what.endswith("Err") else err * rng.standard_normal(n)
    if what == "bboxSize":
        return np.maximum(np.round(6.0 * np.sqrt(_total_sigma2(rows))), 11).astype(np.int64)
    if what == "iRound_flag":
        return np.zeros(n)
    raise KeyError(f"no rule gives values for a column named {what!r}")


Rule = Callable[[re.Match[str], int | None, str, Rows], object]

_RULES: list[tuple[re.Pattern[str], Rule]] = [
    (re.compile(r"ap(?P<radius>\d\d)Flux(?P<err>Err)?"), _aperture_flux),
    (re.compile(r"apFlux_(?P<radius>\d+)_0_instFlux(?P<err>Err)?"), _aperture_flux),
    (re.compile(r"calibFlux(?P<err>Err)?"), _calib_flux),
    (
        re.compile(r"(?P<kind>free_psfFlux|psfFlux|gaapPsfFlux|gaussianFlux|psFlux)(?P<err>Err)?"),
        _psf_flux,
    ),
    (
        re.compile(r"(?P<kind>(free_)?cModelFlux(_inner)?|kronFlux|totFlux)(?P<err>Err)?"),
        _total_flux,
    ),
    (re.compile(r"gaap(?P<aperture>\dp\d|Optimal)Flux(?P<err>Err)?"), _gaap_flux),
    (re.compile(r"bdFlux(?P<part>[BD])(?P<err>Err)?"), _bulge_disk_flux),
    (re.compile(r"(sky|localBackground_instFlux)(?P<err>Err)?"), _noise_flux),
    (re.compile(r"(shape_|i)(?P<comp>xx|yy|xy)(?P<kind>PSF|DebiasedPSF|Round)?"), _moment),
    (re.compile(r"(bdE|hsmShapeRegauss_e)(?P<comp>[12])"), _ellipticity),
    (re.compile(r"bdRe[BD]|hsmShapeRegauss_sigma|kronRad|fwhm|refFwhm"), _shape_size),
    (re.compile(r"(coord_)?(?P<axis>ra|decl|dec)"), _sky_position),
    (re.compile(r"(centroid_)?(?P<axis>[xy])(?P<err>Err)?"), _pixel_position),
    (re.compile(r"psfFlux_area|footprintArea(_value)?"), _area),
    (re.compile(r".*"), _quantity),
]
