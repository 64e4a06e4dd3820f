"""Service logic behind the handlers: queries, VOSI documents, examples (no web imports)."""
