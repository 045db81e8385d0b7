"""PDF bytes to text, page by page: the one PDF reader, for indexed files and for fetched web pages."""

from __future__ import annotations

import io
import logging
import warnings
from dataclasses import dataclass

# pypdf logs the defects of a broken PDF before it raises; the error that names the file (or the URL) says
# enough, and with no logging configured Python would print those lines bare on stderr.
logging.getLogger("pypdf").addHandler(logging.NullHandler())


@dataclass(frozen=True)
class PdfText:
    """The text of each page (empty for a page without extractable text) and the metadata title."""

    title: str
    pages: tuple[str, ...]


def read_pdf(data: bytes) -> PdfText:
    """Extract the text of every page of the PDF in `data`.

    Raises `ValueError` saying why for an encrypted, truncated or malformed file; callers turn it into
    their own error (naming the file, or the URL).
    """
    from pypdf import PdfReader  # pypdf takes a moment to import; only PDFs need it

    try:
        # pypdf warns about the many small defects of real-world PDFs that it recovers from; they are
        # not the user's problem and must not become errors where warnings are errors.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            reader = PdfReader(io.BytesIO(data))
            if reader.is_encrypted and not reader.decrypt(""):
                raise ValueError("the PDF is encrypted — save a decrypted copy")
            pages = tuple(
                (page.extract_text() or "").replace("\r\n", "\n").replace("\r", "\n") for page in reader.pages
            )
            metadata_title = reader.metadata.title if reader.metadata else None
    except ValueError:
        raise
    except Exception as exc:  # pypdf raises many types for malformed files
        raise ValueError(f"{exc} — is the file complete?") from exc
    return PdfText(title=str(metadata_title).strip() if metadata_title else "", pages=pages)
