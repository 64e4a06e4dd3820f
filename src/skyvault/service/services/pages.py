"""The service's HTML pages: the TAP landing page and the bulk directory listings.

Built with the one XML writer (:func:`skyvault.formats._xml.html_document`), so a base URL
or a file name cannot break out of its text or attribute; the handlers choose the URLs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from skyvault.formats._xml import Element, html_document

__all__ = ["ListingRow", "landing_page", "listing_page"]

#: The landing page's links: path under the base URL, what it is.
_LINKS = (
    ("capabilities", "VOSI capabilities (TAPRegExt)"),
    ("availability", "VOSI availability"),
    ("tables", "VOSI tables (tableset)"),
    ("examples", "DALI example queries"),
    ("sync?LANG=ADQL&QUERY=SELECT+TOP+5+*+FROM+TAP_SCHEMA.tables", "a sync query"),
)


def _page(title: str, *body: Element | str | None) -> str:
    head = Element("head", Element("meta", attrs={"charset": "utf-8"}), Element("title", title))
    return html_document(Element("html", head, Element("body", *body)))


def landing_page(base_url: str) -> str:
    """A small page saying what the TAP service at ``base_url`` is and how to use it."""
    links = Element(
        "ul",
        (
            Element("li", Element("a", path, attrs={"href": f"{base_url}/{path}"}), f" — {what}")
            for path, what in _LINKS
        ),
    )
    python = (
        f'import pyvo\nservice = pyvo.dal.TAPService("{base_url}")\n'
        'service.run_sync("SELECT TOP 10 * FROM TAP_SCHEMA.tables").to_table()'
    )
    return _page(
        "skyvault TAP",
        Element("h1", "skyvault TAP service"),
        Element(
            "p", "A TAP 1.1 service answering ADQL 2.1 queries at ", Element("code", base_url), "."
        ),
        links,
        Element("h2", "Connect"),
        Element("pre", python),
        Element(
            "p",
            "TOPCAT: VO → Table Access Protocol (TAP) Query → TAP URL ",
            Element("code", base_url),
            ".",
        ),
    )


@dataclass(frozen=True)
class ListingRow:
    """One entry of a directory listing: its name, link, size and modification time."""

    name: str
    url: str
    size: int | None
    last_modified: str | None


def listing_page(path: str, rows: Sequence[ListingRow], parent_url: str | None) -> str:
    """The HTML listing of the directory ``path``: a table of links (``parent_url``, when
    given, is the ``../`` row) that browsers, ``wget -r`` and fsspec follow."""

    def row(link: Element, size: int | None, modified: str | None) -> Element:
        return Element(
            "tr",
            Element("td", link),
            Element("td", "" if size is None else str(size)),
            Element("td", modified),
        )

    header = Element(
        "tr", Element("th", "Name"), Element("th", "Size"), Element("th", "Last modified")
    )
    parent = None
    if parent_url is not None:
        parent = row(Element("a", "../", attrs={"href": parent_url}), None, None)
    entries = (
        row(Element("a", r.name, attrs={"href": r.url}), r.size, r.last_modified) for r in rows
    )
    title = f"Index of {path}"
    return _page(title, Element("h1", title), Element("table", header, parent, entries))
