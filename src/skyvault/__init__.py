"""skyvault: a data-access service for astronomy archives (HATS catalogues, ADQL, TAP)."""

from __future__ import annotations

from skyvault.errors import SkyvaultError

__all__ = ["SkyvaultError", "__version__"]
__version__ = "0.1.0"
