"""Service logic behind the handlers: queries, sync runs, VOSI documents, examples (no web
imports)."""
