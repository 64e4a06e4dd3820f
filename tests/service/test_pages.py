"""The HTML pages (TAP landing page, bulk listings): every value stays inside its text or
attribute, as an HTML parser reads the page."""

from __future__ import annotations

from html.parser import HTMLParser

from fastapi.testclient import TestClient

from skyvault.service.services.pages import ListingRow, landing_page, listing_page

HOSTILE = "x\"><script>alert(1)</script>&amp;'<!-- ]]> \x01"
READ = HOSTILE.replace("\x01", "\ufffd")


class Page(HTMLParser):
    """What a browser's parser sees: start tags with attributes, end tags, text per tag."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.links: list[tuple[str | None, str]] = []
        self.texts: dict[str, list[str]] = {}
        self._open: list[str] = []
        self._href: str | None = None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self._open.append(tag)  # <meta/> comes back as a start and an end tag
        if tag == "a":
            self._href = dict(attrs).get("href")

    def handle_endtag(self, tag: str) -> None:
        assert self._open.pop() == tag, f"</{tag}> closes another element"

    def handle_data(self, data: str) -> None:
        tag = self._open[-1] if self._open else ""
        self.texts.setdefault(tag, []).append(data)
        if tag == "a":
            self.links.append((self._href, data))


def test_landing_page_keeps_a_hostile_base_url_in_its_place() -> None:
    page = Page(landing_page(HOSTILE))
    assert "script" not in page.tags and not page._open
    assert page.texts["code"] == [READ, READ]
    assert (f"{READ}/capabilities", "capabilities") in page.links
    sync = "sync?LANG=ADQL&QUERY=SELECT+TOP+5+*+FROM+TAP_SCHEMA.tables"
    assert (f"{READ}/{sync}", sync) in page.links
    assert f'pyvo.dal.TAPService("{READ}")' in page.texts["pre"][0]


def test_landing_page_links_work(client: TestClient) -> None:
    r = client.get("/tap")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    page = Page(r.text)
    assert page.texts["h1"] == ["skyvault TAP service"]
    assert len(page.links) == 5
    for href, _ in page.links:
        assert href is not None
        assert client.get(href).status_code == 200, href


def test_listing_page_keeps_hostile_names_in_their_place() -> None:
    rows = [
        ListingRow(HOSTILE, "/bulk/s/t/" + HOSTILE, 12, HOSTILE),
        ListingRow("d/", "/bulk/s/t/d/?signature=a&expires=1", None, None),
    ]
    page = Page(listing_page("/bulk/s/t/" + HOSTILE, rows, "/bulk/s/?signature=a&expires=1"))
    assert "script" not in page.tags and not page._open
    assert page.texts["title"] == page.texts["h1"] == [f"Index of /bulk/s/t/{READ}"]
    assert page.links == [
        ("/bulk/s/?signature=a&expires=1", "../"),
        ("/bulk/s/t/" + READ, READ),
        ("/bulk/s/t/d/?signature=a&expires=1", "d/"),
    ]
    assert page.tags.count("tr") == 4 and page.tags.count("td") == 9
    assert page.texts["td"] == ["12", READ]  # empty cells stay empty
