"""What an uploaded file is, judged from its bytes alone, and what it costs in tokens.

The client's content type is never used, and its file name only as a claim to check:
a name that says one type over bytes of another is refused, so a mislabelled file
never reaches the model. Images are opened with Pillow and PDFs with pypdf at upload,
so a corrupt one is refused then instead of failing a turn later.

The token estimates are what the window assumes for a block the model has not counted
yet (the reply's reported input size replaces it, see shared/memory.py); the offline
model counts with the same functions, so tests see the same figures end to end.
"""
from __future__ import annotations

import io
import json
import math
import warnings
from dataclasses import dataclass
from pathlib import PurePosixPath

IMAGE_TYPES = {"image/png": "PNG", "image/jpeg": "JPEG", "image/gif": "GIF", "image/webp": "WEBP"}
PDF = "application/pdf"
TEXT_TYPES = ("text/plain", "text/markdown", "text/csv", "application/json")
ACCEPTED = (*IMAGE_TYPES, PDF, *TEXT_TYPES)
# What a file name's extension claims; checked against the bytes, never believed.
EXTENSIONS = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif",
              ".webp": "image/webp", ".pdf": PDF, ".txt": "text/plain", ".text": "text/plain",
              ".md": "text/markdown", ".markdown": "text/markdown", ".csv": "text/csv", ".json": "application/json"}

# Claude's image sizing (vision guide, "Evaluate image size" and "Calculate image costs"):
# an image costs about width * height / 750 tokens, after the API scales it down to fit
# 1568 px on its long edge and about 1.15 megapixels (~1,600 tokens).
PIXELS_PER_TOKEN = 750
RESIZE_LONG_EDGE = 1568
RESIZE_MAX_PIXELS = 1_150_000
# A PDF page is sent as its text and an image of the page (PDF support guide, "How PDF
# support works"). The page image is estimated as the page rasterised at 96 dpi, then
# scaled like any image: a US Letter page is about 1,150 tokens plus its text.
PAGE_DPI = 96


class MediaRejected(Exception):
    """An upload refused; `status` is 400, 413 or 415 and `message` names the rule."""

    def __init__(self, status: int, type_: str, message: str):
        super().__init__(message)
        self.status, self.type, self.message = status, type_, message


@dataclass(frozen=True)
class Limits:
    """Caps per kind, in bytes, pixels and pages (shared/config.py says where each comes from)."""
    image_bytes: int
    image_side_px: int
    pdf_bytes: int
    pdf_pages: int
    text_bytes: int

    @property
    def largest(self) -> int:
        return max(self.image_bytes, self.pdf_bytes, self.text_bytes)

    def within(self, other: "Limits") -> "Limits":
        return Limits(*(min(a, b) for a, b in zip(vars(self).values(), vars(other).values())))


# Bedrock's Converse (ImageBlock, DocumentBlock): 3.75 MB an image, 4.5 MB a document.
BEDROCK_LIMITS = Limits(image_bytes=3_750_000, image_side_px=8000, pdf_bytes=4_500_000, pdf_pages=100,
                        text_bytes=4_500_000)


@dataclass(frozen=True)
class MediaFacts:
    media_type: str
    kind: str  # "image" or "document": the content block it becomes
    width: int | None = None
    height: int | None = None
    pages: int | None = None
    token_estimate: int = 1


def image_tokens(width: int, height: int) -> int:
    """Tokens for an image of this size, after the API's downscaling."""
    scale = min(1.0, RESIZE_LONG_EDGE / max(width, height, 1), math.sqrt(RESIZE_MAX_PIXELS / max(width * height, 1)))
    return max(1, math.ceil(int(width * scale) * int(height * scale) / PIXELS_PER_TOKEN))


def text_tokens(text: str) -> int:
    """About four characters a token, as shared/memory.py estimates text."""
    return max(1, (len(text) + 3) // 4)


def pdf_tokens(page_sizes: list[tuple[float, float]], text_chars: int) -> int:
    """Each page's image (its size in points at PAGE_DPI) plus the document's text."""
    pages = sum(image_tokens(round(w * PAGE_DPI / 72), round(h * PAGE_DPI / 72)) for w, h in page_sizes)
    return pages + (text_chars + 3) // 4


def inspect(data: bytes, name: str | None, limits: Limits) -> MediaFacts:
    """What `data` is, checked against `limits`; MediaRejected if it is refused."""
    if not data:
        raise MediaRejected(400, "empty_file", "The file is empty (0 bytes).")
    sniffed = sniff(data)
    claimed = EXTENSIONS.get(PurePosixPath(name or "").suffix.lower())
    if sniffed not in (*ACCEPTED, "text"):
        what = f"The bytes are {sniffed}" if sniffed else "The bytes are of no type Parley recognises"
        raise MediaRejected(415, "unsupported_media_type",
                            f"{what}; accepted: PNG, JPEG, GIF, WebP, PDF, and UTF-8 "
                            f"text (plain, Markdown, CSV, JSON){_claim(name, claimed)}.")
    if sniffed in IMAGE_TYPES or sniffed == PDF:
        if claimed is not None and claimed != sniffed:
            raise _mismatch(name, claimed, sniffed)
        return _image(data, sniffed, limits) if sniffed in IMAGE_TYPES else _pdf(data, limits)
    if claimed is not None and claimed not in TEXT_TYPES:
        raise _mismatch(name, claimed, "text")
    return _text(data, claimed, limits)


def sniff(data: bytes) -> str | None:
    """The media type the bytes' signature says (filetype's table, accepted or not),
    'text' for UTF-8 text, or None for anything else."""
    import filetype

    kind = filetype.guess(data[:8192])
    if kind is not None:
        return kind.mime
    if data.startswith(b"%PDF-"):
        return PDF
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return "text" if "\x00" not in text else None


def _claim(name: str | None, claimed: str | None) -> str:
    return f" (the name {name!r} says {claimed})" if claimed else ""


def _mismatch(name: str | None, claimed: str, sniffed: str) -> MediaRejected:
    actual = "UTF-8 text" if sniffed == "text" else sniffed
    return MediaRejected(415, "media_type_mismatch",
                         f"The name {name!r} says {claimed}, but the bytes are {actual}; rename the file or "
                         f"upload the file you meant.")


def _too_large(what: str, size: int, limit: int, setting: str) -> MediaRejected:
    return MediaRejected(413, "file_too_large", f"{what} is {size:,} bytes; the limit is {limit:,} bytes ({setting}).")


def _image(data: bytes, media_type: str, limits: Limits) -> MediaFacts:
    from PIL import Image, UnidentifiedImageError

    if len(data) > limits.image_bytes:
        raise _too_large("The image", len(data), limits.image_bytes, "MAX_IMAGE_BYTES")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size  # from the header: checked before decoding any pixels
                if max(width, height) > limits.image_side_px:
                    raise MediaRejected(413, "image_too_large",
                                        f"The image is {width}x{height} px; the limit is {limits.image_side_px} px "
                                        f"on each side (MAX_IMAGE_SIDE_PX).")
                if image.format != IMAGE_TYPES[media_type]:
                    raise MediaRejected(400, "corrupt_file", f"The file starts like {media_type} but is not one.")
                image.load()  # decodes every pixel: a truncated or damaged image fails here
    except MediaRejected:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError,
            Image.DecompressionBombWarning) as error:
        raise MediaRejected(400, "corrupt_file", f"The image ({media_type}) cannot be decoded: {error}.") from None
    return MediaFacts(media_type, "image", width=width, height=height, token_estimate=image_tokens(width, height))


def _pdf(data: bytes, limits: Limits) -> MediaFacts:
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    if len(data) > limits.pdf_bytes:
        raise _too_large("The PDF", len(data), limits.pdf_bytes, "MAX_PDF_BYTES")
    try:
        reader = PdfReader(io.BytesIO(data), strict=True)
        if reader.is_encrypted:
            raise MediaRejected(400, "encrypted_pdf", "The PDF is encrypted; Claude reads only PDFs without a "
                                "password or encryption.")
        pages = len(reader.pages)
        if pages > limits.pdf_pages:
            raise MediaRejected(413, "too_many_pages",
                                f"The PDF has {pages} pages; the limit is {limits.pdf_pages} (MAX_PDF_PAGES).")
        if pages == 0:
            raise MediaRejected(400, "corrupt_file", "The PDF has no pages.")
        sizes = [(float(page.mediabox.width), float(page.mediabox.height)) for page in reader.pages]
        text_chars = sum(len(page.extract_text() or "") for page in reader.pages)
    except MediaRejected:
        raise
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, IndexError, OSError) as error:
        raise MediaRejected(400, "corrupt_file", f"The PDF cannot be read: {error}.") from None
    return MediaFacts(PDF, "document", pages=pages, token_estimate=pdf_tokens(sizes, text_chars))


def _text(data: bytes, claimed: str | None, limits: Limits) -> MediaFacts:
    if len(data) > limits.text_bytes:
        raise _too_large("The text file", len(data), limits.text_bytes, "MAX_TEXT_FILE_BYTES")
    text = data.decode("utf-8")
    if not text.strip():
        raise MediaRejected(400, "empty_file", "The text file holds only whitespace.")
    media_type = claimed or ("application/json" if _is_json(text) else "text/plain")
    if media_type == "application/json" and not _is_json(text):
        raise MediaRejected(400, "corrupt_file", "The file is named .json but is not valid JSON.")
    return MediaFacts(media_type, "document", token_estimate=text_tokens(text))


def _is_json(text: str) -> bool:
    try:
        return isinstance(json.loads(text), (dict, list))
    except ValueError:
        return False
