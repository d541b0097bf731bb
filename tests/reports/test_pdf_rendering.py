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
