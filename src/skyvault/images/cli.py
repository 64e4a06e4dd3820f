"""The ``skyvault images ingest`` arguments and run (kept here so ``cli.py`` stays thin)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from skyvault.catalog.ingest import ProgressSink
from skyvault.images.ingest import ImageIngestOptions, ingest_images
from skyvault.images.obscore import LSST_BANDS, read_band_table

__all__ = ["add_ingest_arguments", "run_images_ingest"]


def add_ingest_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of ``skyvault images ingest`` (but --data and the grant options)."""
    p.add_argument("inputs", nargs="+", metavar="FILE", help="FITS images (.fits, .fits.fz), globs")
    p.add_argument(
        "--collection",
        required=True,
        metavar="NAME",
        help="the collection (a schema holding NAME.obscore and NAME.headers)",
    )
    p.add_argument(
        "--bands",
        type=Path,
        metavar="CSV",
        help="band table, columns band,em_min,em_max in metres (default: LSST u g r i z y)",
    )
    p.add_argument(
        "--calib-level", type=int, default=2, help="ObsCore calib_level of the images (2)"
    )
    p.add_argument("--subtype", metavar="TEXT", help="ObsCore dataproduct_subtype")
    p.add_argument(
        "--authority",
        default="skyvault",
        help="IVOA authority of the ids: ivo://AUTHORITY/NAME?OBS_ID (skyvault)",
    )
    p.add_argument(
        "--link",
        action="store_true",
        help="store hard links to the inputs instead of copies where they share the data "
        "root's file system (faster; the inputs must then never be modified in place)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run_images_ingest(args: argparse.Namespace, bar: ProgressSink | None) -> tuple[int, str]:
    """Run the ingest; print what was done and what was skipped.  Returns (status, schema).

    The status is 0 when at least one image was ingested, even if files were skipped (they
    are listed on standard error); nothing ingested raises an ``IngestError`` (status 1).
    """
    bands = read_band_table(args.bands) if args.bands is not None else dict(LSST_BANDS)
    options = ImageIngestOptions(
        bands=bands,
        calib_level=args.calib_level,
        subtype=args.subtype,
        authority=args.authority,
        link=args.link,
    )
    result = ingest_images(args.inputs, args.collection, args.data, options=options, progress=bar)
    for skipped in result.skipped:
        print(f"skipped {skipped.path}: {skipped.reason}", file=sys.stderr)
    print(
        f"ingested {result.images:,} images ({result.cards:,} header cards) from "
        f"{result.files:,} files into {result.collection} under {args.data}; "
        f"{result.collection}.obscore now holds {result.total_images:,} images"
        + (f"; {len(result.skipped)} files skipped" if result.skipped else "")
    )
    return 0, result.collection
