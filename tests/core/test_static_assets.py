"""Static files under content-hashed URLs, cached for a year: a page view costs one request."""

from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path
from urllib.parse import parse_qs, urljoin, urlsplit

YEAR = "public, max-age=31536000, immutable"


def _static_urls(page: str) -> list[str]:
    """The stylesheets, scripts and icons a page links to."""
    return [u for u in re.findall(r'<(?:link|script)[^>]+(?:href|src)="([^"]+)"', page) if "/static/" in u]


def _version(url: str) -> str:
    """The ``v`` query argument of a URL."""
    return parse_qs(urlsplit(url).query).get("v", [""])[0]


def test_every_file_a_page_needs_fonts_included_has_a_hashed_url_cached_for_a_year(client, login_as):
    login_as("technician")
    for page_url in ("/", "/tickets", "/login"):
        page = client.get(page_url)
        assert page.headers["Cache-Control"] == "no-store"  # pages may carry PHI: never cached
    urls = _static_urls(client.get("/").data.decode())
    assert any(u.endswith(".css") or ".css?" in u for u in urls) and any(".js?" in u for u in urls)
    fonts: list[str] = []
    for url in urls:
        response = client.get(url)
        assert response.status_code == 200, url
        assert response.headers["Cache-Control"] == YEAR, url
        assert _version(url) == hashlib.sha256(response.data).hexdigest()[:16], url
        if ".css?" in url:
            for ref in re.findall(r"""url\(\s*['"]?([^'")]+)""", response.data.decode()):
                if ref.startswith("data:"):
                    continue
                target = urljoin(url, ref)
                font = client.get(target)
                assert font.status_code == 200, target
                assert font.headers["Cache-Control"] == YEAR, target
                assert _version(target) == hashlib.sha256(font.data).hexdigest()[:16], target
                fonts.append(target)
    assert any(".woff2?" in f for f in fonts), "the icon font is not versioned"


def test_a_url_without_the_current_hash_must_revalidate(client):
    page = client.get("/login").data.decode()
    url = next(u for u in _static_urls(page) if "pacsdesk.css" in u)
    plain = client.get(urlsplit(url).path)
    stale = client.get(urlsplit(url).path + "?v=0123456789abcdef")
    assert plain.status_code == stale.status_code == 200
    assert plain.headers["Cache-Control"] == stale.headers["Cache-Control"] == "no-cache"
    assert client.get("/static/css/no-such.css").status_code == 404
    assert client.get("/static/../app.py").status_code == 404


def test_a_changed_file_gets_a_new_url_and_so_does_the_stylesheet_using_it(app, client, tmp_path: Path):
    folder = tmp_path / "static"
    (folder / "css" / "fonts").mkdir(parents=True)
    (folder / "css" / "fonts" / "icons.woff2").write_bytes(b"font one")
    (folder / "css" / "site.css").write_text('@font-face{src:url("fonts/icons.woff2#x")}')
    app.static_folder = str(folder)
    with app.test_request_context():
        from flask import url_for

        css_before = url_for("static", filename="css/site.css")
        font_before = url_for("static", filename="css/fonts/icons.woff2")
        (folder / "css" / "fonts" / "icons.woff2").write_bytes(b"font two, longer")
        css_after = url_for("static", filename="css/site.css")
        font_after = url_for("static", filename="css/fonts/icons.woff2")
    assert font_before != font_after and css_before != css_after
    served = client.get(css_after).data.decode()
    assert f'url("fonts/icons.woff2?v={_version(font_after)}#x")' in served
    assert client.get(font_before).headers["Cache-Control"] == "no-cache"
    assert client.get(font_after).headers["Cache-Control"] == YEAR
    shutil.rmtree(folder)
