"""A catalogue HiPS of the real Tycho-2 (1.87M stars, Galactic-plane density): every star
exactly once, in its tile's cell (cdshealpix), brightest first, tiles bounded, Moc.fits
(mocpy) covering every star.  The oracle is the stored table read with pyarrow."""

from __future__ import annotations

import re
from pathlib import Path

import cdshealpix
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from astropy import units as u
from mocpy import MOC

from skyvault.catalog.ingest import IngestOptions, ingest
from skyvault.catalog.layout import TableName
from skyvault.hips import TileLimits, build_catalog_hips, hips_dir

_TILE = re.compile(r"Norder(\d+)/Dir\d+/Npix(\d+)\.tsv$")


@pytest.mark.shared
@pytest.mark.slow
def test_tycho2_catalogue_hips(tycho2_parquet: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    ingest(
        [tycho2_parquet],
        "cat.tycho2",
        data,
        ra="ra",
        dec="dec",
        options=IngestOptions(max_rows_per_partition=250_000, workers=1),
    )
    limits = TileLimits()
    result = build_catalog_hips(data, "cat.tycho2", "mag_vt", columns=["id", "mag_vt"])
    table = pq.read_table((data / "cat" / "tycho2").resolve() / "dataset", columns=["id", "ra"])
    assert result.nrows == table.num_rows

    root = hips_dir(data, TableName("cat", "tycho2"))
    parse = pacsv.ParseOptions(delimiter="\t", quote_char=False)
    types = pacsv.ConvertOptions(
        column_types={"ra": pa.float64(), "dec": pa.float64(), "id": pa.int64()}
    )
    ids, ras, decs, orders, pixels = [], [], [], [], []
    for path in root.glob("Norder*/Dir*/Npix*.tsv"):
        match = _TILE.search(path.as_posix())
        assert match is not None
        order, pixel = int(match.group(1)), int(match.group(2))
        tile = pacsv.read_csv(path, parse_options=parse, convert_options=types)
        assert tile.column_names == ["ra", "dec", "id", "mag_vt"]
        assert 0 < tile.num_rows <= limits.at(order)
        mags = tile.column("mag_vt").to_numpy(zero_copy_only=False)
        assert (np.diff(mags) >= 0).all(), path
        ids.append(tile.column("id").to_numpy())
        ras.append(tile.column("ra").to_numpy())
        decs.append(tile.column("dec").to_numpy())
        orders.append(np.full(tile.num_rows, order))
        pixels.append(np.full(tile.num_rows, pixel))
    all_ids = np.concatenate(ids)
    # Every star of the table once: no star lost, none twice.
    counts = np.bincount(all_ids, minlength=table.num_rows)
    assert counts.size == table.num_rows and (counts == 1).all()
    assert np.array_equal(np.sort(all_ids), np.sort(table.column("id").to_numpy()))
    # Positions are the table's, and each star is in its tile's cell.
    ra = np.concatenate(ras)
    dec = np.concatenate(decs)
    by_id = np.empty(table.num_rows)
    by_id[table.column("id").to_numpy()] = table.column("ra").to_numpy()
    assert np.array_equal(ra, by_id[all_ids])
    order_of = np.concatenate(orders)
    pixel_of = np.concatenate(pixels)
    for order in np.unique(order_of):
        sel = order_of == order
        cells = cdshealpix.nested.lonlat_to_healpix(ra[sel] * u.deg, dec[sel] * u.deg, int(order))
        assert np.array_equal(cells, pixel_of[sel])
    moc = MOC.from_fits(root / "Moc.fits")
    assert moc.contains_lonlat(ra * u.deg, dec * u.deg).all()
