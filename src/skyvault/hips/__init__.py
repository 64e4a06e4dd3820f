"""HiPS (IVOA Hierarchical Progressive Surveys) built from the archive.

* :mod:`skyvault.hips.catalog` — catalogue HiPS from a HATS table (TSV tiles, Allsky,
  ``metadata.xml``, ``Moc.fits``, ``properties``): :func:`build_catalog_hips`.
* :mod:`skyvault.hips.store` — where a published HiPS lives and the safe lookup of its
  files that the web edge (``service/handlers/hips.py``) serves.

Image HiPS are not built yet (they need the image archive).  Nothing here imports the web
layer.
"""

from skyvault.hips.catalog import CatalogHipsResult, TileLimits, build_catalog_hips
from skyvault.hips.store import hips_dir, hips_file

__all__ = ["CatalogHipsResult", "TileLimits", "build_catalog_hips", "hips_dir", "hips_file"]
