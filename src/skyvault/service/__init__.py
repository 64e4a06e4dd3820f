"""The web edge: TAP, UWS, VOSI handlers over the core.

Layout (safir/gafaelfawr layering: thin handlers → services → core):

* :mod:`.app` — ``create_app(settings)``, the FastAPI application;
* :mod:`.handlers` — ``tap`` (landing page, ``/sync``, ``/examples``) and ``vosi``
  (``/availability``, ``/capabilities``, ``/tables``): read parameters, call a service,
  return its bytes;
* :mod:`.services` — ``query`` (run a TAP query: shared by sync and the async workers to
  come), ``vosi`` (capabilities/tables documents), ``examples`` (DALI examples);
* :mod:`.params` — DALI parameter rules (case-insensitive names, single-valued parameters,
  MAXREC, LANG, RESPONSEFORMAT);
* :mod:`.output` — the RESPONSEFORMAT table: short names, MIME types, writers;
* :mod:`.tap_schema` — TAP_SCHEMA 1.1 as in-memory Arrow tables (no web imports);
* :mod:`.exceptions` — the one error renderer (DALI VOTable error documents);
* :mod:`.context` — the objects shared by all requests (settings, archive, services).

Only ``app``, ``handlers``, ``context`` and ``exceptions`` import FastAPI.
"""
