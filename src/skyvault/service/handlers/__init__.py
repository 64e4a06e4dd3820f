"""HTTP handlers: read the request, call a service, serialise the answer (nothing more)."""
