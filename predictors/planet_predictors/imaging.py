"""Image encoding with provenance.

PNG carries provenance as ``tEXt`` chunks (``planetgen:seed``...). WebP and JPEG carry the same keys
as an EXIF ``ImageDescription`` JSON, since they have no text chunks.

RGB and RGBA PNGs are written by fpng (about 25x faster than Pillow at 3440x1440, the same size,
see bench/results/encoding.md); without its wheel, or for other modes, Pillow writes them.
"""

from __future__ import annotations

import io
import json
import logging
import struct
import zlib
from collections.abc import Callable, Mapping
from typing import Literal

import numpy as np
from PIL import Image, PngImagePlugin

log = logging.getLogger(__name__)

Format = Literal["png", "webp", "jpeg"]
FORMATS: tuple[Format, ...] = ("png", "webp", "jpeg")
#: Quality settings chosen for speed at 1536x640 and above (see bench/predictor.py); the PNG level
#: is Pillow's, for the images fpng does not write.
PNG_COMPRESS_LEVEL = 3
WEBP_QUALITY = 90
JPEG_QUALITY = 92
_EXIF_IMAGE_DESCRIPTION = 0x010E
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_IHDR_END = len(_PNG_SIGNATURE) + 8 + 13 + 4  # length, type, 13 bytes of header, CRC


def _load_fpng() -> Callable[[np.typing.NDArray[np.uint8]], bytes] | None:
    try:
        import fpng
    except ImportError as exc:  # a platform without its wheel: slower, same pixels and chunks
        log.warning("fpng is not available (%s); PNGs are encoded by Pillow, about 25x slower", exc)
        return None
    encode: Callable[[np.typing.NDArray[np.uint8]], bytes] = fpng.from_ndarray
    return encode


_fpng = _load_fpng()


def encode(image: Image.Image, fmt: Format, *, provenance: Mapping[str, str] | None = None) -> bytes:
    """Encode ``image``; ``provenance`` keys are written without a prefix change."""
    buffer = io.BytesIO()
    meta = dict(provenance or {})
    if fmt == "png":
        if _fpng is not None and image.mode in ("RGB", "RGBA"):
            return with_text(_fpng(np.asarray(image)), meta)
        info = PngImagePlugin.PngInfo()
        for key, value in meta.items():
            info.add_text(key, value)
        image.save(buffer, format="PNG", pnginfo=info, compress_level=PNG_COMPRESS_LEVEL)
    elif fmt in ("webp", "jpeg"):
        exif = Image.Exif()
        if meta:
            exif[_EXIF_IMAGE_DESCRIPTION] = json.dumps(meta, sort_keys=True)
        if fmt == "webp":
            image.save(buffer, format="WEBP", quality=WEBP_QUALITY, method=2, exif=exif.tobytes())
        else:
            image.convert("RGB").save(buffer, format="JPEG", quality=JPEG_QUALITY, exif=exif.tobytes())
    else:
        raise ValueError(f"unsupported format {fmt!r}; supported: {', '.join(FORMATS)}")
    return buffer.getvalue()


def with_text(png: bytes, text: Mapping[str, str]) -> bytes:
    """``png`` with ``text`` chunks after its header, written as Pillow's ``PngInfo.add_text`` does."""
    if not png.startswith(_PNG_SIGNATURE) or png[12:16] != b"IHDR":
        raise ValueError("not a PNG that starts with its IHDR chunk")
    chunks = []
    for key, value in text.items():
        try:  # tEXt is Latin-1; anything else needs an uncompressed iTXt, as Pillow falls back to
            kind, data = b"tEXt", key.encode("latin-1") + b"\0" + value.encode("latin-1")
        except UnicodeError:
            kind, data = b"iTXt", key.encode("latin-1") + b"\0\0\0\0\0" + value.encode("utf-8")
        crc = zlib.crc32(kind + data)
        chunks.append(struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc))
    return b"".join([png[:_IHDR_END], *chunks, png[_IHDR_END:]])


def read_provenance(data: bytes) -> dict[str, str]:
    """The provenance keys of an encoded image (PNG text chunks or the EXIF description)."""
    with Image.open(io.BytesIO(data)) as image:
        if image.format == "PNG":
            return {k: str(v) for k, v in image.text.items()}  # type: ignore[attr-defined]
        description = image.getexif().get(_EXIF_IMAGE_DESCRIPTION)
    if not description:
        return {}
    decoded = json.loads(description)
    return {str(k): str(v) for k, v in decoded.items()} if isinstance(decoded, dict) else {}
