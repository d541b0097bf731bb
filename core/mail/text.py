"""Turn an e-mail body into the words a person wrote: HTML to text, quoted history removed.

``html_to_text`` keeps the text of an HTML part and drops scripts, styles and comments (nothing
is executed or kept); quoted blocks (``<blockquote>``) come out as ``>`` lines.
``extract_reply`` cuts a reply at the first of:

- the signature delimiter ``-- `` (or ``--``) alone on a line;
- an attribution line ``On <date>, <name> wrote:`` (Gmail, Apple Mail, Thunderbird; also
  split over up to three lines, and in French, German, Spanish, Dutch, Italian, Portuguese);
- Outlook's header block: ``From:`` followed within six lines by ``Sent:``/``Date:`` and
  ``To:``/``Subject:`` (English, German, French, Spanish), or ``-----Original Message-----``;
- a mobile footer such as ``Sent from my iPhone``;

and drops every remaining line that starts with ``>``.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

SKIPPED = frozenset({"script", "style", "head", "title", "noscript", "template", "svg", "object",
                     "iframe"})
PARAGRAPHS = frozenset({"p", "ul", "ol", "table", "blockquote", "pre", "hr", "h1", "h2", "h3", "h4",
                        "h5", "h6"})
LINES = frozenset({"div", "li", "tr", "section", "article", "header", "footer", "dd", "dt", "address"})

ON_WROTE = re.compile(
    r"^(?:on|le|am|el|op|il|em)\s.{0,400}?"
    r"(?:wrote|a\s+écrit|schrieb|escribió|schreef|ha\s+scritto|escreveu)\s*:$",
    re.IGNORECASE | re.DOTALL,
)
OUTLOOK_FROM = re.compile(r"^\*?(?:from|von|de|van)\s*:\*?\s", re.IGNORECASE)
OUTLOOK_SENT = re.compile(r"^\*?(?:sent|date|gesendet|datum|envoyé|enviado|fecha)\s*:", re.IGNORECASE)
OUTLOOK_TO = re.compile(r"^\*?(?:to|an|à|para|subject|betreff|objet|asunto)\s*:", re.IGNORECASE)
ORIGINAL = re.compile(r"^-{3,}\s*(?:original message|ursprüngliche nachricht|message d'origine|"
                      r"mensaje original)\s*-{3,}$", re.IGNORECASE)
MOBILE = re.compile(r"^(?:sent from my \w+|get outlook for \w+|sent from (?:mail|outlook) for \w+)",
                    re.IGNORECASE)
RULE = re.compile(r"^[_\-=*\s]+$")


class _TextExtractor(HTMLParser):
    """Collects the visible text of an HTML document, line by line."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lines: list[str] = []
        self.current: list[str] = []
        self.skipping = 0
        self.quote_depth = 0
        self.preformatted = 0

    def _flush(self) -> None:
        """End the current line, even an empty one."""
        line = " ".join("".join(self.current).split())
        self.lines.append(("> " * self.quote_depth) + line)
        self.current = []

    def _break(self, paragraph: bool) -> None:
        """Start a new line (after a blank one for a paragraph) unless already at one."""
        if "".join(self.current).strip():
            self._flush()
        if paragraph and self.lines and self.lines[-1].strip("> "):
            self.lines.append("> " * self.quote_depth)
        self.current = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in SKIPPED:
            self.skipping += 1
        elif tag == "br":
            self._flush()
        elif tag in PARAGRAPHS or tag in LINES:
            self._break(tag in PARAGRAPHS)
            if tag == "blockquote":
                self.quote_depth += 1
            elif tag == "pre":
                self.preformatted += 1
            elif tag == "li":
                self.current.append("- ")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "br":
            self._flush()
        elif tag in PARAGRAPHS or tag in LINES:
            self._break(tag in PARAGRAPHS)

    def handle_endtag(self, tag: str) -> None:
        if tag in SKIPPED:
            self.skipping = max(0, self.skipping - 1)
        elif tag in PARAGRAPHS or tag in LINES:
            self._break(tag in PARAGRAPHS)
            if tag == "blockquote":
                self.quote_depth = max(0, self.quote_depth - 1)
            elif tag == "pre":
                self.preformatted = max(0, self.preformatted - 1)

    def handle_data(self, data: str) -> None:
        if self.skipping:
            return
        if self.preformatted:
            first, *rest = data.split("\n")
            self.current.append(first)
            for line in rest:
                self._flush()
                self.current.append(line)
            return
        self.current.append(re.sub(r"\s+", " ", data))


def html_to_text(html: str) -> str:
    """The visible text of an HTML body; scripts, styles and comments are dropped."""
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    parser._break(paragraph=False)
    return tidy("\n".join(parser.lines))


def tidy(text: str) -> str:
    """Trim line ends, drop leading/trailing blank lines and runs of more than one blank line."""
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    result: list[str] = []
    for line in lines:
        if line or (result and result[-1]):
            result.append(line)
    while result and not result[-1]:
        result.pop()
    return "\n".join(result)


def _attribution_at(lines: list[str], index: int) -> bool:
    """Whether an ``On ... wrote:`` line, possibly wrapped over three lines, starts at ``index``."""
    for span in (1, 2, 3):
        joined = " ".join(line.strip() for line in lines[index:index + span])
        if ON_WROTE.match(joined):
            return True
    return False


def _outlook_block_at(lines: list[str], index: int) -> bool:
    """Whether Outlook's From:/Sent:/To: header block starts at ``index``."""
    if not OUTLOOK_FROM.match(lines[index].strip()):
        return False
    following = [line.strip() for line in lines[index + 1:index + 7]]
    return any(OUTLOOK_SENT.match(line) for line in following) and any(
        OUTLOOK_TO.match(line) for line in following)


def _cut_index(lines: list[str]) -> int:
    """Index of the first line of quoted history or signature, or len(lines)."""
    for index, line in enumerate(lines):
        stripped = line.strip()
        if line.rstrip("\r") in ("-- ", "--") or ORIGINAL.match(stripped) or MOBILE.match(stripped):
            return index
        if stripped.startswith(">"):
            continue
        if _attribution_at(lines, index) or _outlook_block_at(lines, index):
            return index
    return len(lines)


def extract_reply(text: str) -> str:
    """The new words of a reply: quoted history, attribution lines and the signature removed."""
    lines = tidy(text).split("\n")
    kept = [line for line in lines[:_cut_index(lines)] if not line.lstrip().startswith(">")]
    while kept and RULE.match(kept[-1]):
        kept.pop()
    return tidy("\n".join(kept))
