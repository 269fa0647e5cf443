"""Image files to pixels: which files are images, and the one rule that decodes any of them to 8-bit RGB."""
from __future__ import annotations

import hashlib
import io
import os
import stat
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

# the extensions torchvision's ImageFolder accepts (it skips hymenoptera's stray imageNotFound.gif too)
IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp"}


def to_rgb(im: Image.Image) -> Image.Image:
    """Any PIL mode as 8-bit RGB, one stated rule per kind of image (``convert("RGB")`` alone clips 16 bits).

    - RGB, L (grey), 1-bit (black 0, white 255), CMYK, YCbCr, LAB, HSV: PIL's own conversion.
      16-bit RGB(A) PNGs already open as 8-bit RGB(A) (PIL keeps each sample's high byte).
    - 16-bit grey (``I;16``, ``I;16B``, ...): scaled by the full 16-bit range, ``v * 255 / 65535``,
      so a dark exposure stays dark as a viewer shows it (no per-image contrast stretch).
    - 32-bit integer grey (``I``): the same 16-bit scale when every value is in 0..65535 (how 16-bit
      images arrive in this mode), else the image's own min..max.
    - float grey (``F``): values in [0, 1] times 255; values in [0, 255] as they are; anything
      else the image's own min..max; NaN counts as 0.
    - transparency (RGBA, LA, PA, premultiplied modes, a palette or grey/RGB image with a transparent
      colour): composited on white. Dropping alpha would show whatever colour the transparent pixels
      happen to store (often black, sometimes leftovers); white is what the image looks like on a page.

    Example:
        >>> np.asarray(to_rgb(Image.fromarray(np.array([[0, 65535]], np.uint16))))[0, :, 0]
        array([  0, 255], dtype=uint8)
    """
    if im.mode == "P":
        alpha = "transparency" in im.info or (im.palette is not None and im.palette.mode == "RGBA")
        im = im.convert("RGBA" if alpha else "RGB")
    elif im.mode in ("1", "L", "RGB") and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        white = Image.new("RGBA", im.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, im.convert("RGBA")).convert("RGB")
    if im.mode.startswith("I") or im.mode == "F":
        a = np.nan_to_num(np.asarray(im).astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
        if im.mode.startswith("I") and 0 <= lo and hi <= 65535:
            a = a * (255 / 65535)
        elif im.mode == "F" and 0 <= lo and hi <= 1:
            a = a * 255
        elif not (im.mode == "F" and 0 <= lo and hi <= 255):
            a = (a - lo) * (255 / (hi - lo)) if hi > lo else np.zeros_like(a)
        return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8)).convert("RGB")  # 2-D uint8: L
    return im if im.mode == "RGB" else im.convert("RGB")


def upright(im: Image.Image) -> Image.Image:
    """``im`` turned as its EXIF orientation says (phone photos are stored sideways with a tag)."""
    try:
        turned = im.getexif().get(0x0112, 1) not in (None, 1)  # 0x0112: Orientation
    except Exception:  # a broken EXIF block: show the pixels as stored
        return im
    return ImageOps.exif_transpose(im) if turned else im


def center_crop(im: Image.Image, resolution: int) -> np.ndarray:
    """The one preprocessing of a stored image: upright (EXIF), ``to_rgb``, the centred square of the
    shorter side resized to ``resolution``.

    The square is cut in the source's coordinates before resizing, so a thin or huge image costs
    no more than its crop (a 1 x 40,000 px strip is not first resized to 128 x 5,120,000).

    Example:
        >>> center_crop(Image.new("RGB", (1, 40000)), 128).shape
        (128, 128, 3)
    """
    im = to_rgb(upright(im))
    w, h = im.size
    side = min(w, h)
    left, top = (w - side) / 2, (h - side) / 2
    im = im.resize((resolution, resolution), Image.BILINEAR, box=(left, top, left + side, top + side),
                   reducing_gap=3.0)
    return np.asarray(im, dtype=np.uint8)


def decode(path: Path, resolution: int, with_digest: bool = False):
    """Decode one file with ``center_crop``; None if unreadable (``with_digest``: also the sha1 of its bytes).

    Only regular files are opened: a FIFO or device named ``.jpg`` would block the reader forever.
    """
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise OSError(f"{path} is not a regular file")
        data = Path(path).read_bytes()
        with Image.open(io.BytesIO(data)) as im:
            im.draft("RGB", (resolution, resolution))  # JPEG: decode at a reduced scale, much faster
            arr = center_crop(im, resolution)
        digest = hashlib.sha1(data).hexdigest() if with_digest else None
    except Exception:
        arr, digest = None, None
    return (arr, digest) if with_digest else arr
