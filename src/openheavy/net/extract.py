"""Fetched bytes to the text a reader would see, and telling when there is none worth citing.

HTML goes through trafilatura (main content, without navigation, ads, comments sections), after
elements a visitor never sees are removed: hidden text is where a hostile page hides instructions for
agents. PDF goes through the one PDF reader (`openheavy.pdf`). A page that is an anti-bot wall, a login
form or empty after extraction is *unreadable*: it holds nothing an answer could cite.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

from openheavy.pdf import read_pdf

# trafilatura logs "discarding data" and similar for every page it finds no text in. Without a
# handler of its own, Python prints its warnings on stderr, through the live view; the NullHandler stops
# that and still lets an application that configures logging see them.
logging.getLogger("trafilatura").addHandler(logging.NullHandler())

# Styles that hide an element from a visitor (inline only: class-based hiding needs the page's CSS).
_HIDDEN_STYLE = re.compile(
    r"display\s*:\s*none|visibility\s*:\s*hidden|font-size\s*:\s*0(?![.\d])|opacity\s*:\s*0(?![.\d])",
    re.IGNORECASE,
)
_HIDDEN_XPATH = "//*[@hidden] | //template | //*[@aria-hidden='true'] | //*[@style]"

# Anti-bot interstitials (Cloudflare, Akamai, Imperva, DataDome, PerimeterX, hCaptcha, reCAPTCHA).
# "Strong" markers are page machinery, not words an article would use.
_WALL_STRONG = (
    "cf_chl_opt",
    "cf-browser-verification",
    "challenge-platform",
    "captcha-delivery.com",
    "_incapsula_resource",
    "px-captcha",
    "g-recaptcha",
    "h-captcha",
    "cf-turnstile",
)
_WALL_WORDS = (
    "just a moment...",
    "attention required! | cloudflare",
    "checking your browser",
    "verify you are human",
    "verifying you are human",
    "are you a robot",
    "enable javascript and cookies to continue",
    "ddos protection by",
    "request unsuccessful. incapsula",
    "access denied",
    "captcha",
    "unusual traffic",
)
_BLOCKING_STATUSES = frozenset({401, 403, 429, 503})
_PASSWORD_INPUT = re.compile(r"<input[^>]+type\s*=\s*[\"']?password", re.IGNORECASE)
_LOGIN_PATH = re.compile(r"/(log-?in|sign-?in|signon|auth|sso|accounts?/login|session/new)\b", re.IGNORECASE)
_LOGIN_TITLE = re.compile(r"\b(log ?in|sign ?in|sign on)\b", re.IGNORECASE)
_SPACE = re.compile(r"\s+")

# Below these many characters of extracted text a page is empty; a wall or login form with more text
# than the second is taken to be a real page that happens to carry a widget.
MIN_TEXT_CHARS = 80
WALL_MAX_TEXT_CHARS = 1500


@dataclass(frozen=True)
class Extracted:
    """A page's title and main text (Markdown-style for HTML)."""

    title: str
    text: str


def extract_html(body: bytes, url: str) -> Extracted:
    """The title and main text of an HTML page, without comments or elements hidden from visitors."""
    import trafilatura  # about 0.3 s to import: only pages need it

    tree: Any = trafilatura.load_html(body)
    if tree is None:
        return Extracted("", "")
    title = _title(tree)
    _drop_hidden(tree)
    text = trafilatura.extract(
        tree,
        url=url,
        output_format="markdown",
        include_comments=False,
        include_images=False,
        include_links=False,
        include_tables=True,
        with_metadata=False,
    )
    return Extracted(title, (text or "").strip())


def _title(tree: Any) -> str:
    for path in ("//meta[@property='og:title']/@content", "//title//text()", "//h1//text()"):
        found = " ".join(str(part) for part in tree.xpath(path))
        title = _SPACE.sub(" ", found).strip()
        if title:
            return title
    return ""


def _drop_hidden(tree: Any) -> None:
    """Remove elements a visitor never sees (their tail text, which is visible, stays)."""
    for element in tree.xpath(_HIDDEN_XPATH):
        style = element.get("style")
        if style is not None and element.get("hidden") is None and not _HIDDEN_STYLE.search(style):
            continue
        if element.getparent() is not None:
            element.drop_tree()


def extract_plain(body: bytes, charset: str | None) -> Extracted:
    """A text/plain (or Markdown) page: its first line is its title."""
    try:
        text = body.decode(charset or "utf-8", errors="replace")
    except LookupError:  # an unknown charset name
        text = body.decode("utf-8", errors="replace")
    text = text.replace("\r\n", "\n").replace("\r", "\n").strip()
    first = text.split("\n", 1)[0].lstrip("# ").strip()
    return Extracted(first[:200], text)


def extract_pdf(body: bytes) -> Extracted:
    """A PDF's metadata title and its pages' text, each page under a `Page N` heading. Raises
    `ValueError` for an encrypted, truncated or malformed file."""
    pdf = read_pdf(body)
    parts = [f"Page {n}\n{page.strip()}" for n, page in enumerate(pdf.pages, start=1) if page.strip()]
    return Extracted(pdf.title, "\n\n".join(parts))


def unreadable_reason(*, status: int, raw: str, extracted: Extracted, url: str) -> tuple[str, str] | None:
    """`(reason, explanation)` when a fetched page holds nothing worth citing, else None.

    `raw` is the start of the page as text (markup included): walls show themselves in markup the
    extracted text drops. Reasons: "anti-bot", "login", "http-status", "empty".
    """
    lowered = raw.casefold()
    chars = len(_SPACE.sub(" ", extracted.text).strip())
    title = extracted.title.casefold()
    strong = any(marker in lowered for marker in _WALL_STRONG)
    words = any(marker in lowered or marker in title for marker in _WALL_WORDS)
    if (status in _BLOCKING_STATUSES and (strong or words)) or (strong and chars < WALL_MAX_TEXT_CHARS):
        return "anti-bot", "the site answered with an anti-bot check (a CAPTCHA or browser challenge)"
    if chars < WALL_MAX_TEXT_CHARS and (
        _PASSWORD_INPUT.search(raw)
        or (status in (200, 401, 403) and _LOGIN_PATH.search(url) and chars < MIN_TEXT_CHARS * 4)
        or (_LOGIN_TITLE.search(title) and chars < MIN_TEXT_CHARS * 4)
    ):
        return "login", "the page asks to log in; its content is not public"
    if status >= 400:
        return "http-status", f"the server answered HTTP {status}"
    if chars < MIN_TEXT_CHARS:
        return "empty", f"no readable text after extraction ({chars} characters)"
    return None
