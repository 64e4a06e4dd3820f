"""The DP0.2 demo data set: ``skyvault demo`` builds it, deterministically from a seed.

Every table of Rubin's Data Preview 0.2 catalogue schema ``dp02_dc2_catalogs`` (but ObsCore,
an image-access table DP0.2 serves as ``ivoa.ObsCore``) with every one of its columns, their
names, types, units and descriptions from the Felis schema in ``lsst-sdm-schemas``:

* ``Object``: coadd measurements (991 columns) of clustered galaxies, stars and sky objects,
  most of them in a deep field around (62°, -37°) at DP0.2's density (about 100 rows in a
  0.01° cone), the rest thinly over the DP0.2 footprint (RA 52-72°, Dec -44 to -28°);
* ``ForcedSource`` and ``Source``: forced and detected single-epoch photometry, linked by
  ``objectId`` and ``ccdVisitId``; a few per cent of objects vary;
* ``DiaObject``, ``DiaSource``, ``ForcedSourceOnDiaObject``: the variable objects detected on
  difference images, their detections and forced light curves;
* ``TruthSummary`` and ``MatchesTruth``: the simulated truth, matched to Objects;
* ``Visit``, ``CcdVisit``, ``CoaddPatches``: pointings, CCD exposures and patches;
* the image collections ``dp02_calexp`` and ``dp02_deepcoadd`` (``obscore`` and ``headers``
  tables, :mod:`skyvault.images`): simulated calexp-like CCD exposures and deepCoadd-like
  patches near the deep field, drawn from the objects (:mod:`.images`).

Modules: :mod:`.schema` (tables and columns), :mod:`.sky` (positions), :mod:`.survey`
(camera, visits), :mod:`.objects` (photometry), :mod:`.epochs` (time series), :mod:`.dia`
(DiaObject statistics), :mod:`.truth` (truth tables), :mod:`.fill` (every other column, by
name and unit), :mod:`.images` (the pixels), :mod:`.build` (files and ingest).
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
