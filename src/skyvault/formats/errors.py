"""DALI error documents: the VOTable a DAL service answers with when a request fails."""

from __future__ import annotations

from collections.abc import Sequence

from skyvault.formats.votable import votable_header

__all__ = ["dali_error_document"]


def dali_error_document(
    message: str, *, infos: Sequence[tuple[str, str, str | None]] = ()
) -> bytes:
    """A VOTable error document as DALI specifies it (section "Use of VOTable", Errors).

    One ``RESOURCE type="results"`` whose leading INFO is
    ``<INFO name="QUERY_STATUS" value="ERROR">message</INFO>``, and no TABLE.

    Parameters
    ----------
    message
        What went wrong, for the person who made the request; XML-escaped here.  For a
        :class:`~skyvault.errors.SkyvaultError` pass ``str(error)`` (message and hint).
    infos
        ``(name, value, content)`` of extra INFO elements placed after the status.

    Returns
    -------
    bytes
        The UTF-8 document.
    """
    head = votable_header(infos, status="ERROR", status_message=message)
    return (head + "</RESOURCE>\n</VOTABLE>\n").encode()
