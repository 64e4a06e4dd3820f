"""Catalogue storage: HATS layout on disk, ingest, column metadata, the registry of tables."""
