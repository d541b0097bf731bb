"""HTML templates to PDF with WeasyPrint, offline: only local files and data: URLs are read."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from flask import current_app
from markupsafe import Markup
from weasyprint import CSS, HTML
from weasyprint.urls import URLFetcher, URLFetcherResponse

log = logging.getLogger(__name__)

# Debian's fonts-dejavu-core; fontconfig finds them by family name as well.
FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
STYLESHEET = "css/report.css"


class LocalOnlyFetcher(URLFetcher):
    """A URL fetcher that refuses every URL except data: and files under the allowed folders."""

    def __init__(self, roots: Iterable[Path]) -> None:
        super().__init__(allowed_protocols=("file", "data"), fail_on_errors=False)
        self.roots = tuple(root.resolve() for root in roots)
        self.refused: list[str] = []

    def fetch(self, url: str, headers: Any = None) -> URLFetcherResponse:
        """Serve data: URLs and allowed local files; refuse (and remember) anything else."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme == "data":
            return super().fetch(url, headers)
        if scheme == "file":
            path = Path(unquote(parts.path)).resolve()
            if any(path.is_relative_to(root) for root in self.roots) and path.is_file():
                return URLFetcherResponse(url, path.read_bytes())
        self.refused.append(url)
        log.warning("PDF rendering refused to fetch %s", url[:200])
        raise ValueError(f"PDF rendering does not fetch {url[:200]}: only local files")


def local_fetcher() -> LocalOnlyFetcher:
    """A fetcher limited to the app's static folder and the system fonts."""
    return LocalOnlyFetcher([Path(current_app.static_folder or "static"), FONT_DIR])


def stylesheet_path() -> Path:
    """The PDF stylesheet on disk."""
    return Path(current_app.static_folder or "static") / STYLESHEET


def html_to_pdf(html: str, fetcher: LocalOnlyFetcher | None = None,
                extra_css: Sequence[str] = ()) -> bytes:
    """Lay out ``html`` with the report stylesheet and return the PDF bytes."""
    fetcher = fetcher or local_fetcher()
    static = Path(current_app.static_folder or "static")
    sheets = [CSS(filename=str(stylesheet_path()), url_fetcher=fetcher)]
    sheets += [CSS(string=text, url_fetcher=fetcher) for text in extra_css]
    document = HTML(string=html, base_url=static.as_uri() + "/", url_fetcher=fetcher)
    return document.write_pdf(stylesheets=sheets)


def render_pdf(template: str, fetcher: LocalOnlyFetcher | None = None, **context: Any) -> bytes:
    """Render ``templates/reports/<template>`` with ``context`` and return the PDF bytes.

    The template is rendered without the page context processors, so it works the same in a
    request, a background thread and the CLI.
    """
    html = current_app.jinja_env.get_template(f"reports/{template}").render(**context)
    return html_to_pdf(html, fetcher)


def _cell(value: object, width: int) -> str:
    """One cell of a tab-aligned line: text cut to leave a gap, then tabs to the next column."""
    text = " ".join(str(value if value is not None else "").split())
    if len(text) >= width:
        text = text[: width - 2] + "…"
    elif text and len(text) % 8 == 0:
        text += " "  # never end exactly on a tab stop
    return text + "\t" * (width // 8 - len(text) // 8)


def text_columns(columns: Sequence[tuple[str, int]], rows: Iterable[Sequence[object]],
                 per_page: int = 50, first_page: int = 40, page_breaks: bool = True,
                 block: int = 10) -> Markup:
    """Rows as tab-aligned monospace lines (widths in characters, multiples of 8).

    WeasyPrint lays out a line of text an order of magnitude faster than a row of table
    cells, so long listings (report appendices) use this instead of a <table>. Rows come
    in groups of ``per_page`` (``first_page`` for the first) that repeat the column titles;
    with ``page_breaks`` each group ends its page, so no layout is thrown away. Lines go in
    small <pre> blocks because WeasyPrint shapes a block's whole remaining text per line.
    """
    widths = [width for _, width in columns]
    last = len(columns) - 1

    def line(values: Sequence[object]) -> str:
        cells = [_cell(v, w) if i < last else " ".join(str(v or "").split())[:w]
                 for i, (v, w) in enumerate(zip(values, widths, strict=True))]
        return escape("".join(cells))

    head = '<pre class="rows"><b>' + line([title for title, _ in columns]) + "</b></pre>"
    css = "rows-page" if page_breaks else "rows-group"
    groups: list[str] = []
    lines: list[str] = []

    def flush() -> None:
        blocks = ("\n".join(lines[i:i + block]) for i in range(0, len(lines), block))
        groups.append(f'<div class="{css}">{head}'
                      + "".join(f'<pre class="rows">{text}</pre>' for text in blocks) + "</div>")
        lines.clear()

    size = first_page
    for row in rows:
        lines.append(line(row))
        if len(lines) == size:
            flush()
            size = per_page
    if lines:
        flush()
    return Markup("".join(groups))  # noqa: S704 - every line went through escape()
