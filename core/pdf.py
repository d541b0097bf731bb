"""HTML templates to PDF with WeasyPrint, offline: only local files and data: URLs are read."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pydyf
from flask import current_app
from markupsafe import Markup
from pypdf import PdfReader, PdfWriter
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
                extra_css: Sequence[str] = (), listing: Listing | None = None,
                frame: PageFrame | None = None) -> bytes:
    """Lay out ``html`` with the report stylesheet and return the PDF bytes.

    With a ``listing`` whose first page the HTML holds, the listing's further pages are
    written directly (see ``Listing``) and appended, numbered within the whole document.
    """
    fetcher = fetcher or local_fetcher()
    static = Path(current_app.static_folder or "static")
    sheets = [CSS(filename=str(stylesheet_path()), url_fetcher=fetcher)]
    sheets += [CSS(string=text, url_fetcher=fetcher) for text in extra_css]
    document = HTML(string=html, base_url=static.as_uri() + "/", url_fetcher=fetcher).render(
        stylesheets=sheets)
    extra = listing.later_pages() if listing is not None else []
    if listing is None or not extra:
        return document.write_pdf()
    # The HTML reserved one placeholder page per later page, so "Page X of Y" counts them.
    keep = len(document.pages) - len(extra)
    placeholder = document.pages[keep]
    head = document.copy(document.pages[:keep]).write_pdf()
    tail = text_pages_pdf(extra, listing.header, frame or PageFrame(), first_number=keep + 1,
                          total=len(document.pages), width=placeholder.width * 0.75,
                          height=placeholder.height * 0.75)
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(head)))
    for page in PdfReader(io.BytesIO(tail)).pages:
        writer.add_page(page)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def render_pdf(template: str, fetcher: LocalOnlyFetcher | None = None,
               listing: Listing | None = None, frame: PageFrame | None = None,
               **context: Any) -> bytes:
    """Render ``templates/reports/<template>`` with ``context`` and return the PDF bytes.

    The template is rendered without the page context processors, so it works the same in a
    request, a background thread and the CLI.
    """
    html = current_app.jinja_env.get_template(f"reports/{template}").render(listing=listing,
                                                                            **context)
    return html_to_pdf(html, fetcher, listing=listing, frame=frame)


def _cell(value: object, width: int) -> str:
    """One cell of a fixed-width line: text cut to leave a gap, padded to the column width."""
    text = " ".join(str(value if value is not None else "").split())
    if len(text) >= width:
        text = text[: width - 2] + "…"
    return text.ljust(width)


def text_columns(columns: Sequence[tuple[str, int]], rows: Iterable[Sequence[object]],
                 per_page: int = 50, first_page: int = 40, page_breaks: bool = True,
                 block: int = 10) -> Markup:
    """Rows as fixed-width monospace lines (column widths in characters), laid out by WeasyPrint.

    WeasyPrint lays out a line of text an order of magnitude faster than a row of table
    cells, so long listings (report appendices) use this instead of a <table>. Rows come
    in groups of ``per_page`` (``first_page`` for the first) that repeat the column titles;
    with ``page_breaks`` each group ends its page, so no layout is thrown away. Lines go in
    small <pre> blocks because WeasyPrint shapes a block's whole remaining text per line.
    """
    widths = [width for _, width in columns]
    last = len(columns) - 1

    def line(values: Sequence[object]) -> str:
        cells = [_cell(v, w) if i < last else " ".join(str("" if v is None else v).split())[:w]
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


@dataclass(frozen=True)
class PageFrame:
    """The running header and footer texts of directly written pages."""

    top_left: str = ""
    top_right: str = ""
    bottom_left: str = ""


class Listing:
    """A long fixed-width listing (a report appendix): first page in HTML, the rest written directly.

    WeasyPrint spends about a millisecond per line; a page of plain monospace lines needs no
    layout at all. The HTML holds the listing's first page (after its heading) and one empty
    placeholder page per further page, so page numbers and "of Y" stay right; those further
    pages are then written straight to PDF with the same embedded DejaVu Sans Mono. The
    listing must end the document (its placeholders are the document's last pages).
    """

    def __init__(self, columns: Sequence[tuple[str, int]], rows: Iterable[Sequence[object]],
                 first_page: int = 40, per_page: int = 50) -> None:
        self.widths = [width for _, width in columns]
        self.header = self._line([title for title, _ in columns])
        self.lines = [self._line(row) for row in rows]
        self.first_page = first_page
        self.per_page = per_page
        # Direct pages carry WinAnsi text only; a name in another script keeps the whole
        # listing in WeasyPrint (slower, never wrong).
        self.direct = _winansi(self.header) and all(_winansi(line) for line in self.lines)

    def _line(self, values: Sequence[object]) -> str:
        """One row as fixed-width text (not escaped)."""
        last = len(self.widths) - 1
        return "".join(_cell(v, w) if i < last else " ".join(str("" if v is None else v).split())[:w]
                       for i, (v, w) in enumerate(zip(values, self.widths, strict=True))).rstrip()

    def later_pages(self) -> list[list[str]]:
        """The lines of every page after the first."""
        if not self.direct:
            return []
        rest = self.lines[self.first_page:]
        return [rest[i:i + self.per_page] for i in range(0, len(rest), self.per_page)]

    def __len__(self) -> int:
        return len(self.lines)

    def __html__(self) -> str:
        """The first page's block and the placeholders for the pages written directly."""
        shown = self.lines[: self.first_page] if self.direct else self.lines
        head = f"<b>{escape(self.header)}</b>"
        blocks = [shown[i:i + self.per_page] for i in range(0, len(shown), self.per_page)] or [[]]
        html = "".join(f'<pre class="rows">{head}\n' + "\n".join(escape(line) for line in block)
                       + "</pre>" for block in blocks)
        return html + '<div class="listing-placeholder"></div>' * len(self.later_pages())


MONO_FONT = FONT_DIR / "DejaVuSansMono.ttf"
MONO_ADVANCE = 1233 / 2048          # DejaVu Sans Mono glyph advance, in em
BODY_SIZE, BODY_LEADING = 6.6, 6.6 * 1.32
MARGINS = (20, 14, 18, 14)          # top, right, bottom, left in mm, as in report.css


def _winansi(text: str) -> bool:
    """Whether ``text`` can be written in the direct pages' WinAnsi encoding."""
    try:
        text.encode("cp1252")
    except UnicodeEncodeError:
        return False
    return True


def _pdf_text(text: str) -> bytes:
    """A PDF literal string in WinAnsi encoding (running texts outside it become '?')."""
    raw = text.encode("cp1252", errors="replace")
    return b"(" + raw.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)") + b")"


@cache
def _mono_font_bytes() -> bytes:
    """The monospace font file, read once."""
    return MONO_FONT.read_bytes()


def _mono_font(pdf: pydyf.PDF) -> pydyf.Dictionary:
    """Embed DejaVu Sans Mono as a WinAnsi TrueType font and return its font dictionary."""
    data = _mono_font_bytes()
    font_file = pydyf.Stream([data], {"Length1": len(data)}, compress=True)
    pdf.add_object(font_file)
    descriptor = pydyf.Dictionary({
        "Type": "/FontDescriptor", "FontName": "/DejaVuSansMono", "Flags": 33,
        "FontBBox": pydyf.Array([-559, -375, 718, 1028]), "ItalicAngle": 0, "Ascent": 928,
        "Descent": -236, "CapHeight": 729, "StemV": 80, "FontFile2": font_file.reference})
    pdf.add_object(descriptor)
    font = pydyf.Dictionary({
        "Type": "/Font", "Subtype": "/TrueType", "BaseFont": "/DejaVuSansMono", "FirstChar": 32,
        "LastChar": 255, "Widths": pydyf.Array([round(MONO_ADVANCE * 1000)] * 224),
        "Encoding": "/WinAnsiEncoding", "FontDescriptor": descriptor.reference})
    pdf.add_object(font)
    return font


def text_pages_pdf(pages: Sequence[Sequence[str]], header: str, frame: PageFrame, first_number: int,
                   total: int, width: float, height: float) -> bytes:
    """Pages of monospace lines under a bold column header, with the report's running texts."""
    mm = 72 / 25.4
    top, right, bottom, left = (m * mm for m in MARGINS)
    pdf = pydyf.PDF()
    font = _mono_font(pdf)
    resources = pydyf.Dictionary({"Font": pydyf.Dictionary({"F1": font.reference})})
    pdf.add_object(resources)

    def at(x: float, y: float, size: float, text: str) -> bytes:
        return b"/F1 %.2f Tf 1 0 0 1 %.2f %.2f Tm %s Tj\n" % (size, x, y, _pdf_text(text))

    for index, lines in enumerate(pages):
        number = f"Page {first_number + index} of {total}"
        parts = [b"BT 0.33 g\n", at(left, height - top / 2, 7, frame.top_left),
                 at(width - right - len(frame.top_right) * 7 * MONO_ADVANCE, height - top / 2, 7,
                    frame.top_right),
                 at(left, bottom / 2, 5.5, frame.bottom_left), b"0 g\n",
                 at(width - right - len(number) * 7.5 * MONO_ADVANCE, bottom / 2, 7.5, number),
                 b"/F1 %.2f Tf %.3f TL 1 0 0 1 %.2f %.2f Tm\n"
                 % (BODY_SIZE, BODY_LEADING, left, height - top - BODY_SIZE),
                 b"2 Tr 0.2 w %s Tj 0 Tr\n" % _pdf_text(header)]
        parts += [b"%s '\n" % _pdf_text(line) for line in lines]
        parts.append(b"ET\n")
        content = pydyf.Stream([b"".join(parts)], compress=True)
        pdf.add_object(content)
        pdf.add_page(pydyf.Dictionary({
            "Type": "/Page", "Parent": pdf.pages.reference,
            "MediaBox": pydyf.Array([0, 0, round(width, 2), round(height, 2)]),
            "Contents": content.reference, "Resources": resources.reference}))
    out = io.BytesIO()
    pdf.write(out)
    return out.getvalue()
