"""Test files made on the spot, the same bytes every run: images drawn with Pillow, PDFs
written with pypdf, so no binary fixture is checked in."""
from __future__ import annotations

import io


def png(width: int = 40, height: int = 30, color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (width, height), color).save(out, "PNG")
    return out.getvalue()


def jpeg(width: int = 40, height: int = 30) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (width, height), (20, 120, 220)).save(out, "JPEG")
    return out.getvalue()


def pdf(pages: int = 2, width: float = 100, height: float = 100) -> bytes:
    """Blank pages of `width` x `height` points (the offline model counts each page's image)."""
    from pypdf import PdfWriter

    writer = PdfWriter()
    for _ in range(pages):
        writer.add_blank_page(width, height)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


CSV = b"city,visitors\nLisbon,120\nPorto,80\n"
