"""The web edge: TAP, UWS, VOSI handlers over the core.

Layout (safir/gafaelfawr layering: thin handlers → services → core; a subsystem with its
own storage keeps all three layers in its own package, as ``uws`` does):

* :mod:`.app` — ``create_app(settings)``, the FastAPI application;
* :mod:`.handlers` — ``tap`` (landing page, ``/sync``, ``/examples``), ``vosi``
  (``/availability``, ``/capabilities``, ``/tables``), ``bulk``, ``hips``, ``portal``: read
  parameters, call a service, return its bytes;
* :mod:`.services` — ``query`` (run a TAP query: shared by sync and the async workers),
  ``sync`` (a ``/sync`` query's slot, result and audit line), ``vosi``
  (capabilities/tables documents), ``examples`` (DALI examples), ``pages`` (HTML pages);
* :mod:`.uws` — UWS 1.1 async jobs: ``handlers`` (``/async``), ``service`` (their rules),
  storage, runner, documents;
* :mod:`.params` — reading a request's parameters and form body (uploads under a size cap)
  and the DALI parameter rules (case-insensitive names, single-valued parameters, MAXREC,
  LANG, RESPONSEFORMAT);
* :mod:`.exceptions` — the one error renderer (DALI VOTable error documents);
* :mod:`.context` — the objects shared by all requests (settings, archive, services).

The RESPONSEFORMAT table is :mod:`skyvault.formats.output`, TAP_SCHEMA
:mod:`skyvault.catalog.tap_schema` (core code: no web imports).  The services themselves
import no web framework; handlers, ``params``, ``context``, ``exceptions`` and ``app`` do.
"""
