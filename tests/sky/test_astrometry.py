"""Epoch propagation against astropy's apply_space_motion (ERFA) as the oracle."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
from astropy import units as u
from astropy.coordinates import Distance, SkyCoord
from astropy.time import Time

from skyvault.engine.connection import Sandbox, _udf_definitions
from skyvault.sky.astrometry import propagate


def _astropy(ra, dec, plx, pmra, pmdec, rv, t0, t1):  # type: ignore[no-untyped-def]
    c = SkyCoord(
        ra=ra * u.deg,
        dec=dec * u.deg,
        distance=Distance(parallax=plx * u.mas),
        pm_ra_cosdec=pmra * u.mas / u.yr,
        pm_dec=pmdec * u.mas / u.yr,
        radial_velocity=rv * u.km / u.s,
        obstime=Time(t0, format="jyear", scale="tdb"),
    )
    moved = c.apply_space_motion(new_obstime=Time(t1, format="jyear", scale="tdb"))
    return moved.ra.deg, moved.dec.deg


def test_matches_astropy_for_fast_and_near_stars() -> None:
    rng = np.random.default_rng(5)
    n = 300
    ra = rng.uniform(0, 360, n)
    dec = np.degrees(np.arcsin(rng.uniform(-0.99, 0.99, n)))
    plx = rng.uniform(1, 500, n)
    pmra = rng.normal(0, 2000, n)
    pmdec = rng.normal(0, 2000, n)
    rv = rng.normal(0, 100, n)
    got_ra, got_dec = propagate(ra, dec, plx, pmra, pmdec, rv, np.full(n, 2016.0 - 2000.0))
    want_ra, want_dec = _astropy(ra, dec, plx, pmra, pmdec, rv, 2000.0, 2016.0)
    sep = SkyCoord(got_ra, got_dec, unit="deg").separation(SkyCoord(want_ra, want_dec, unit="deg"))
    # ERFA also applies the light-time (Roemer) correction, of order v_r/c of the motion.
    assert sep.to(u.mas).max() < 0.5 * u.mas
    moved = SkyCoord(ra, dec, unit="deg").separation(SkyCoord(got_ra, got_dec, unit="deg"))
    assert moved.to(u.arcsec).max() > 30 * u.arcsec  # the test really moves stars


def test_barnards_star_through_duckdb(tmp_path: Path) -> None:
    macros, udfs = _udf_definitions()
    assert "ivo_epoch_prop_pos" in [name for name, *_ in udfs]
    cur = Sandbox([tmp_path], macros=macros, python_udfs=udfs).cursor()
    # Barnard's star, Gaia DR3 (epoch 2016.0).
    star = (269.44850252543836, 4.739420051112683, 546.975939730948, -801.551, 10362.394, -110.5)
    cur.register(
        "stars",
        pa.table(
            {
                "ra": [star[0], None],
                "dec": [star[1], 1.0],
                "plx": [star[2], None],
                "pmra": [star[3], 1.0],
                "pmdec": [star[4], 1.0],
                "rv": [star[5], None],
            }
        ),
    )
    rows = cur.execute(
        "SELECT ivo_epoch_prop_pos(ra, dec, plx, pmra, pmdec, rv, 2016.0, 2000.0) FROM stars"
    ).fetchall()
    got, missing = rows[0][0], rows[1][0]
    assert missing is None
    want_ra, want_dec = _astropy(*[np.array([v]) for v in star], 2016.0, 2000.0)
    sep = SkyCoord(got["ra"], got["dec"], unit="deg").separation(
        SkyCoord(want_ra[0], want_dec[0], unit="deg")
    )
    assert sep.to(u.mas) < 0.5 * u.mas
