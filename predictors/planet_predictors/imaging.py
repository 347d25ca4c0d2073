"""Image encoding with provenance.

PNG carries provenance as ``tEXt`` chunks (``planetgen:seed``...). WebP and JPEG carry the same keys
as an EXIF ``ImageDescription`` JSON, since they have no text chunks.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from typing import Literal

from PIL import Image, PngImagePlugin

Format = Literal["png", "webp", "jpeg"]
FORMATS: tuple[Format, ...] = ("png", "webp", "jpeg")
#: Quality settings chosen for speed at 1536x640 and above (see bench/predictor.py).
PNG_COMPRESS_LEVEL = 3
WEBP_QUALITY = 90
JPEG_QUALITY = 92
_EXIF_IMAGE_DESCRIPTION = 0x010E


def encode(image: Image.Image, fmt: Format, *, provenance: Mapping[str, str] | None = None) -> bytes:
    """Encode ``image``; ``provenance`` keys are written without a prefix change."""
    buffer = io.BytesIO()
    meta = dict(provenance or {})
    if fmt == "png":
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
