"""Result serialisation: VOTable, CSV/TSV, FITS, Parquet, Arrow IPC, JSON writers that stream."""

from skyvault.formats.errors import dali_error_document
from skyvault.formats.votable import (
    SERIALIZATIONS,
    VOTABLE_NAMESPACE,
    VOTABLE_SCHEMA_LOCATION,
    Serialization,
    write_votable,
)

__all__ = [
    "SERIALIZATIONS",
    "VOTABLE_NAMESPACE",
    "VOTABLE_SCHEMA_LOCATION",
    "Serialization",
    "dali_error_document",
    "write_votable",
]
