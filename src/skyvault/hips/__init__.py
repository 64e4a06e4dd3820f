"""HiPS (IVOA Hierarchical Progressive Surveys) built from the archive.

* :mod:`skyvault.hips.catalog` — catalogue HiPS from a HATS table (TSV tiles, Allsky,
  ``metadata.xml``, ``Moc.fits``, ``properties``): :func:`build_catalog_hips`.
* :mod:`skyvault.hips.image` — image HiPS from FITS images (FITS/PNG/JPEG tiles, Allsky,
  ``Moc.fits``, ``properties``; incremental): :func:`build_image_hips`.
* :mod:`skyvault.hips.store` — where a published HiPS lives and the safe lookup of its
  files that the web edge (``service/handlers/hips.py``) serves.

Image HiPS are built from files for now; building them from the image archive's
collections (``--collection NAME``) comes with that archive.  Nothing here imports the web
layer.
"""

from skyvault.hips.catalog import CatalogHipsResult, TileLimits, build_catalog_hips
from skyvault.hips.image import ImageHipsResult, build_image_hips
from skyvault.hips.store import hips_dir, hips_file, image_hips_dir

__all__ = [
    "CatalogHipsResult",
    "ImageHipsResult",
    "TileLimits",
    "build_catalog_hips",
    "build_image_hips",
    "hips_dir",
    "hips_file",
    "image_hips_dir",
]
