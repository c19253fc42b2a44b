"""Image preprocessing of the converters (the original's, SPEC.md "Data").

Any image PIL reads -> RGB (greyscale repeated to three channels, alpha
dropped, CMYK converted, 16-bit scaled to 8) -> centre crop of the largest
square -> bilinear resize to image_size -> uint8 [S, S, 3].

JPEGs are decoded with PIL's `draft` unless told not to: when both sides are
at least twice image_size the decoder reduces the image during the inverse
DCT (scale 1/2, 1/4 or 1/8, both sides kept >= image_size), and the bilinear
resize does the rest. ILSVRC-sized JPEGs convert ~1.3x faster, large photos
~2.5x. The DCT reduction filters a little differently from PIL's
antialiased bilinear: on smooth content the two results differ by ~2 grey
levels on average, more on detail near the output resolution (BUILD_NOTES.md,
Data: the converters).
"""

from __future__ import annotations

import io
from typing import Tuple, Union

import numpy as np
from PIL import Image

# Decompression-bomb guard stays on (PIL default), but at a size no real
# photo reaches.
Image.MAX_IMAGE_PIXELS = 20_000 * 20_000


def center_crop_box(width: int, height: int) -> Tuple[int, int, int, int]:
  """(left, top, right, bottom) of the largest centred square; odd margins round down."""
  side = min(width, height)
  left = (width - side) // 2
  top = (height - side) // 2
  return left, top, left + side, top + side


def to_rgb(image: Image.Image) -> Image.Image:
  """An RGB image: grey repeated, alpha dropped (not composited), CMYK converted."""
  if image.mode == "RGB":
    return image
  if image.mode in ("I;16", "I;16B", "I;16L", "I"):
    # PIL's direct conversion clips 16-bit values at 255: scale instead.
    a = np.asarray(image, dtype=np.int64)
    top = 65535 if image.mode.startswith("I;16") or a.max() > 255 else 255
    a = np.clip(a * 255 // max(top, 1), 0, 255).astype(np.uint8)
    image = Image.fromarray(a, "L")
  if image.mode == "F":
    a = np.asarray(image, dtype=np.float32)
    image = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8), "L")
  if image.mode == "P":
    image = image.convert("RGBA")
  return image.convert("RGB")


def preprocess_pil(image: Image.Image, image_size: int) -> np.ndarray:
  """PIL image (any mode) -> uint8 [image_size, image_size, 3]."""
  image = to_rgb(image)
  box = center_crop_box(*image.size)
  image = image.crop(box)
  if image.size != (image_size, image_size):
    image = image.resize((image_size, image_size), Image.BILINEAR)
  return np.asarray(image, dtype=np.uint8)


def preprocess_array(array: np.ndarray, image_size: int) -> np.ndarray:
  """uint8 [h, w] or [h, w, 1|3|4] -> uint8 [image_size, image_size, 3]."""
  a = np.asarray(array)
  if a.ndim == 3 and a.shape[2] == 1:
    a = a[:, :, 0]
  if a.ndim == 3 and a.shape[2] == 4:
    a = a[:, :, :3]
  return preprocess_pil(Image.fromarray(a.astype(np.uint8)), image_size)


def load_image(source: Union[str, bytes], image_size: int,
               draft: bool = True) -> np.ndarray:
  """Reads an image file (path or encoded bytes) and preprocesses it.

  The format comes from the content, not the name (ImageNet has PNGs named
  .JPEG). Raises whatever PIL raises for an unreadable file (OSError,
  PIL.UnidentifiedImageError, ValueError, DecompressionBombError).
  """
  if isinstance(source, (bytes, bytearray)):
    source = io.BytesIO(source)
  with Image.open(source) as image:
    if draft and image.format == "JPEG":
      image.draft("RGB", (image_size, image_size))
    image.load()  # decode now, inside the caller's error handling
    return preprocess_pil(image, image_size)
