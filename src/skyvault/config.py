"""Service settings: data root, network address, limits; read from ``SKYVAULT_*`` variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings"]


class Settings(BaseSettings):
    """Configuration of a skyvault service.

    Every field can be set from the environment with the ``SKYVAULT_`` prefix
    (``SKYVAULT_DATA_DIR``, ``SKYVAULT_MAXREC_LIMIT`` ...) or passed to the constructor.
    """

    model_config = SettingsConfigDict(env_prefix="SKYVAULT_", frozen=True)

    data_dir: Path = Field(default=Path("data"), description="data root the catalogues live in")
    host: str = Field(default="127.0.0.1", description="address the server listens on")
    port: int = Field(default=8000, ge=0, le=65535, description="port the server listens on")
    base_url: str | None = Field(
        default=None,
        description=(
            "public URL of the TAP service (e.g. https://data.example.org/tap); when unset, "
            "links in VOSI documents are made from each request's own URL"
        ),
    )
    path_prefix: str = Field(default="/tap", description="path the TAP service is mounted at")
    maxrec_default: int = Field(default=100_000, ge=0, description="rows returned without MAXREC")
    maxrec_limit: int = Field(default=10_000_000, ge=0, description="most rows MAXREC may ask for")
    query_timeout: float = Field(default=600.0, gt=0, description="time limit of a sync query, s")
    memory_limit: str = Field(default="2GB", description="DuckDB memory limit for queries")
    query_threads: int = Field(default=2, ge=1, description="DuckDB threads per query")
    fits_row_limit: int = Field(
        default=2_000_000,
        ge=0,
        description="FITS results are assembled in memory: at most this many rows",
    )
