"""The one image decoder of the system: image-folder ingestion and `predict` both read files
through `decode_image`, so a file means the same pixels when a task is trained on it and when
it is predicted.

* 8-bit grey and colour images are used as they are (palette, alpha and CMYK converted to
  grey or RGB).
* 16-bit images (PIL modes `I;16*` and `I` from 16-bit PNG and TIFF files) are scaled to 8 bits
  (value * 255 / 65535, rounded), never clipped: clipping turned every bright 16-bit image
  into an all-white one. 32-bit integer images with values outside 0..65535 and float images
  have no defined range and are refused with that reason.
* Images smaller than `MIN_IMAGE_SIDE` pixels on a side are refused: at 1x1 or 4x4 there is no
  content left to learn from or classify, only a colour, and resizing it to the model's input
  size invents the rest. 8 px is well below the smallest real datasets (MNIST's 28 px,
  CIFAR's 32 px) and at the size of the ViT's smallest patch.
* Images over `MAX_IMAGE_PIXELS` are refused before decoding (a small file can decode to
  gigabytes: PIL's own decompression-bomb limit).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from mu2net.errors import TaskError

MIN_IMAGE_SIDE = 8


class ImageRefused(TaskError):
    """A readable image the system refuses (too small, too large, a bit depth without an
    8-bit form): ingestion stops on it rather than skipping it as an unreadable file."""


MAX_IMAGE_PIXELS = 89_478_485
_GREY_MODES = ("1", "L", "LA")
_WIDE_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N")


def decode_image(file_path: str) -> np.ndarray:
    """uint8 [H, W] (grey) or [H, W, 3] (colour) of an image file.

    Raises:
      TaskError: naming the file and the reason (missing, not an image, too small, too large,
        a bit depth without a faithful 8-bit form).
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(file_path) as im:
                width, height = im.size
                if width * height > MAX_IMAGE_PIXELS:
                    raise ImageRefused(f"image {file_path!r} is {width}x{height} pixels, more than "
                                    f"the {MAX_IMAGE_PIXELS:,} allowed (a decompression bomb?): "
                                    "resize it first")
                if min(width, height) < MIN_IMAGE_SIDE:
                    raise ImageRefused(f"image {file_path!r} is {width}x{height} pixels, smaller "
                                    f"than the minimum {MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE}: it "
                                    "holds no content to learn from; use larger images")
                im.load()
                return _to_uint8(im, file_path)
    except TaskError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageRefused(f"image {file_path!r} is refused as a decompression bomb: {exc}"
                           ) from None
    except UnidentifiedImageError:
        raise TaskError(f"{file_path!r} is not an image file PIL can read (PNG, JPEG, ...)"
                        ) from None
    except (OSError, SyntaxError, ValueError) as exc:
        what = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise TaskError(f"image {file_path!r} cannot be read: {what}") from None


def _to_uint8(im: Any, file_path: str) -> np.ndarray:
    if im.mode in _WIDE_MODES:
        values = np.asarray(im, dtype=np.int64)
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise ImageRefused(f"image {file_path!r} is a 32-bit integer image with values "
                            f"{values.min()}..{values.max()}, outside 16 bits: it has no "
                            "defined 8-bit form; save it as an 8- or 16-bit image")
        return np.rint(values * (255.0 / 65535.0)).astype(np.uint8)
    if im.mode == "F":
        raise ImageRefused(f"image {file_path!r} holds floating-point pixels, which have no "
                        "defined 8-bit range; save it as an 8- or 16-bit image")
    return np.asarray(im.convert("L" if im.mode in _GREY_MODES else "RGB"), dtype=np.uint8)
