"""Result serialisation: VOTable, CSV/TSV, FITS, Parquet, JSON writers that stream."""
