"""skyvault: a data-access service for astronomy archives (HATS catalogues, ADQL, TAP).

>>> import skyvault
>>> archive = skyvault.open("demo-data")                      # doctest: +SKIP
>>> archive.query("SELECT TOP 3 objectId FROM dp02_dc2_catalogs.Object")  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from skyvault.errors import SkyvaultError

if TYPE_CHECKING:
    from skyvault.engine.archive import Archive

__all__ = ["SkyvaultError", "__version__", "open"]
__version__ = "0.1.0"


def open(data_dir: str | Path, **options: Any) -> Archive:
    """Open the catalogues under ``data_dir`` for ADQL queries (see :class:`Archive`)."""
    from skyvault.engine.archive import open_archive

    return open_archive(data_dir, **options)
