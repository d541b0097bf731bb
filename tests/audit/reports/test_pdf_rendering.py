"""PDF rendering never touches the network: every non-local URL is refused."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

from pypdf import PdfReader

from core.pdf import html_to_pdf, local_fetcher


class CountingHandler(BaseHTTPRequestHandler):
    """Counts every request it receives."""

    hits: list[str] = []

    def do_GET(self) -> None:
        CountingHandler.hits.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "text/css")
        self.end_headers()
        self.wfile.write(b"body { color: red }")

    def log_message(self, *args) -> None:
        return


def test_rendering_refuses_remote_and_non_static_urls(app, tmp_path):
    server = HTTPServer(("127.0.0.1", 0), CountingHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_port}"
    html = (f'<link rel="stylesheet" href="{base}/style.css">'
            f'<style>@import url("{base}/imported.css"); '
            f'p {{ background: url("https://example.org/bg.png") }}</style>'
            f'<p>Offline <img src="{base}/logo.png"> <img src="file:///etc/passwd"></p>')
    try:
        with app.app_context():
            fetcher = local_fetcher()
            pdf = html_to_pdf(html, fetcher)
    finally:
        server.shutdown()
    assert CountingHandler.hits == []
    assert any(url.startswith(base) for url in fetcher.refused)
    assert "file:///etc/passwd" in fetcher.refused
    assert "https://example.org/bg.png" in fetcher.refused
    path = tmp_path / "x.pdf"
    path.write_bytes(pdf)
    assert "Offline" in PdfReader(str(path)).pages[0].extract_text()


def test_report_fonts_are_the_embedded_dejavu_fonts(app, tmp_path):
    with app.app_context():
        pdf = html_to_pdf("<p>Größe — 10 µs</p><pre class='rows'>mono</pre>")
    path = tmp_path / "f.pdf"
    path.write_bytes(pdf)
    fonts = set()
    for page in PdfReader(str(path)).pages:
        for font in page["/Resources"]["/Font"].values():
            fonts.add(str(font.get_object()["/BaseFont"]))
    assert any(f.endswith("+DejaVu-Sans") for f in fonts), fonts
    assert any(f.endswith("+DejaVu-Sans-Mono") for f in fonts), fonts


def _listing_pdf_text(app, tmp_path, rows) -> str:
    """Render a long listing as a report appendix and read its text back."""
    from core.pdf import Listing, PageFrame
    from tests.audit.reports.conftest import pdf_text

    listing = Listing([("user", 20), ("action", 30)], rows)
    with app.app_context():
        data = html_to_pdf(f"<h1>Appendix</h1>{listing.__html__()}", listing=listing,
                           frame=PageFrame("Org", "Title", "footer"))
    return pdf_text(data, tmp_path)


def test_long_listing_keeps_names_in_any_script(app, tmp_path):
    rows = [(f"user{i}", "ticket.view") for i in range(150)] + [("Łukasz Żółć", "ticket.view"),
                                                                 ("Дмитрий", "user.login")]
    text = _listing_pdf_text(app, tmp_path, rows)
    assert "Łukasz Żółć" in text
    assert "Дмитрий" in text
    assert "user149" in text


def test_long_winansi_listing_is_complete_on_every_page(app, tmp_path):
    rows = [(f"user{i}", "ticket.view") for i in range(300)]
    text = _listing_pdf_text(app, tmp_path, rows)
    assert all(f"user{i} " in text or f"user{i}\n" in text for i in (0, 39, 40, 150, 299))


def test_table_text_wraps_between_words_never_inside_one(app, tmp_path):
    from tests.audit.reports.conftest import pdf_text

    cells = "".join(f"<td>{word}</td>" for word in ("Sanitisation", "Method", "Witness", "Certificate",
                                                    "Location", "Department", "Manufacturer", "Serial"))
    long_cell = "<td>" + " ".join(["category workload radiology"] * 6) + "</td>"
    html = (f'<table class="data"><thead><tr>{cells}<th>Details</th></tr></thead>'
            f'<tbody><tr>{cells}{long_cell}</tr></tbody></table>')
    with app.app_context():
        text = pdf_text(html_to_pdf(html), tmp_path)
    words = text.split()
    for word in ("Sanitisation", "Method", "Witness", "Certificate", "Department", "Manufacturer"):
        assert words.count(word) == 2, (word, text)
    assert set(words) >= {"category", "workload", "radiology"}
    whole = {"category", "workload", "radiology"}
    assert not any(w.startswith(("catego", "worklo", "radiol")) and w not in whole for w in words), text
