"""The DP0.2-style demo data set: ``skyvault demo`` builds it, deterministically from a seed.

Five tables in the image of Rubin's Data Preview 0.2, with DP0.2's own column names, types,
units and descriptions (from ``lsst-sdm-schemas``), in schema ``dp02_dc2_catalogs``:

* ``Object``: coadd measurements of clustered galaxies, stars and sky objects in the DP0.2
  footprint (RA 52-72°, Dec -44 to -28°);
* ``ForcedSource``: forced PSF photometry of every object on several epochs, linked by
  ``objectId`` and ``ccdVisitId``; a few per cent of objects vary;
* ``Source``: single-epoch detections of the objects bright enough on each epoch;
* ``Visit`` and ``CcdVisit``: the pointings and CCD exposures (tables without positions).

Modules: :mod:`.schema` (column choice), :mod:`.sky` (positions), :mod:`.survey` (camera,
visits), :mod:`.objects` (photometry), :mod:`.epochs` (time series), :mod:`.build` (files
and ingest).
"""

from skyvault.demo.build import (
    DEFAULT_SEED,
    SCALES,
    DemoScale,
    build_demo,
    demo_is_built,
    generate_demo,
)

__all__ = [
    "DEFAULT_SEED",
    "SCALES",
    "DemoScale",
    "build_demo",
    "demo_is_built",
    "generate_demo",
]
