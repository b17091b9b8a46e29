"""Reading, checking and writing the images of paired datasets.

Every image becomes RGB, float32 in [0, 1], shape (H, W, 3). Conversions, the same on the
tf.data path (TensorFlow decoders) and the Pillow path (`PyDataset`, evaluation iterators):

- 8-bit RGB: divided by 255.
- Grayscale (8-bit "L", 1-bit, 16-bit): the one channel is replicated into R, G and B.
- Palette ("P"): expanded through its palette to RGB; palette transparency is ignored.
- With alpha ("RGBA", "LA", "PA"): the alpha channel is dropped, not composited; colours under
  transparent pixels are kept as stored.
- 16-bit PNG: divided by 65535. The tf.data path keeps all 16 bits; Pillow reads 16-bit colour
  PNGs at 8-bit precision (off by at most 1/255), 16-bit grayscale at full precision.
- CMYK, YCbCr and LAB (JPEG, TIFF): converted to RGB by Pillow.

Refused with a `DataError` naming the file: anything Pillow cannot open or whose data is damaged
(random bytes, truncated files, bad PNG checksums), floating-point or 32-bit integer images
(their value range is not defined), and other unusual modes.

Decoding: PNGs of any of the modes above and 8-bit RGB/grayscale JPEGs are decoded by
TensorFlow inside the tf.data graph; other files (BMP, TIFF, WebP, CMYK JPEG, ...) go through
Pillow in a `tf.numpy_function`. Files are checked up front (`inspect_image`), so the tf.data graph
never meets a file it cannot decode.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from keras_mhdeblur.utils.files import write_file_atomically

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")

# Pillow modes we read, and how: the 16-bit grayscale family keeps 16 bits, the rest go to RGB.
_SIXTEEN_BIT_GRAY_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N"})
_SUPPORTED_MODES = frozenset(
    {"1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"}
) | _SIXTEEN_BIT_GRAY_MODES
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class DataError(ValueError):
    """A dataset file or folder that cannot be used; the message names it and says why."""


@dataclass(frozen=True)
class ImageInfo:
    """What a cheap header read tells about an image file.

    Attributes:
        path: the file.
        format: Pillow's format name ("PNG", "JPEG", ...).
        mode: Pillow's mode ("RGB", "L", "P", "I;16", ...).
        height, width: size in pixels.
        bit_depth: bits per channel, 8 or 16.
    """

    path: Path
    format: str
    mode: str
    height: int
    width: int
    bit_depth: int

    @property
    def tf_decodable(self):
        """Whether `tf.io.decode_image` reads this file exactly as the Pillow path does."""
        if self.format == "PNG":
            return True
        return self.format == "JPEG" and self.mode in ("L", "RGB")


def _png_bit_depth(path):
    """Bit depth from the PNG IHDR chunk (Pillow does not report it for colour PNGs)."""
    with open(path, "rb") as file:
        head = file.read(26)
    if len(head) < 26 or not head.startswith(_PNG_SIGNATURE):
        return 8
    return 16 if head[24] == 16 else 8


def _unreadable(path, error):
    return DataError(f"{path}: cannot be read as an image ({type(error).__name__}: {error})")


def inspect_image(path, verify=True):
    """Reads the header of an image file and checks that it can be used.

    Args:
        path: image file.
        verify: also run Pillow's integrity check (reads the file and checks PNG chunk
            checksums without decoding pixels); catches truncated and damaged files.

    Returns:
        `ImageInfo`.

    Raises:
        DataError: the file is missing, is not an image, is damaged, or has an unsupported mode.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        with Image.open(path) as image:
            fmt, mode, (width, height) = image.format, image.mode, image.size
            if verify:
                image.verify()
    except Exception as error:  # Pillow raises many exception types for bad files
        raise _unreadable(path, error) from None
    bit_depth = 16 if mode in _SIXTEEN_BIT_GRAY_MODES else 8
    if fmt == "PNG":
        bit_depth = _png_bit_depth(path)
        if mode == "I" and bit_depth == 16:  # some Pillow versions open 16-bit gray PNGs as "I"
            mode = "I;16"
    if mode not in _SUPPORTED_MODES:
        raise DataError(
            f"{path}: unsupported image mode {mode!r} ({fmt}); expected 8-bit or 16-bit "
            "grayscale, RGB, RGBA or palette images"
        )
    if width < 1 or height < 1:
        raise DataError(f"{path}: image is empty ({width}x{height})")
    return ImageInfo(path, fmt, mode, height, width, bit_depth)


def read_image_array(path, dtype=np.uint8):
    """Reads an image file with Pillow as RGB integers.

    Args:
        path: image file.
        dtype: np.uint8 (values 0..255) or np.uint16 (0..65535; 8-bit files are scaled by 257).

    Returns:
        (H, W, 3) array of `dtype`.

    Raises:
        DataError: the file cannot be read or has an unsupported mode.
    """
    dtype = np.dtype(dtype)
    if dtype not in (np.uint8, np.uint16):
        raise ValueError(f"dtype must be uint8 or uint16, got {dtype}")
    path = Path(path)
    try:
        with Image.open(path) as image:
            image.load()
            pixels = _to_rgb_array(image, path)
    except DataError:
        raise
    except Exception as error:
        raise _unreadable(path, error) from None
    if pixels.dtype == dtype:
        return pixels
    if dtype == np.uint16:
        return pixels.astype(np.uint16) * np.uint16(257)
    return ((pixels.astype(np.uint32) + 128) // 257).astype(np.uint8)


def _to_rgb_array(image, path):
    """(H, W, 3) uint8 array, or uint16 for 16-bit grayscale, following the module's conversions."""
    mode = image.mode
    if mode in _SIXTEEN_BIT_GRAY_MODES or mode == "I":
        gray = np.asarray(image)
        if mode == "I" and (gray.min() < 0 or gray.max() > 65535):
            raise DataError(f"{path}: 32-bit integer image with values outside 0..65535; unsupported")
        return np.repeat(gray.astype(np.uint16)[..., None], 3, axis=-1)
    if mode not in _SUPPORTED_MODES:
        raise DataError(f"{path}: unsupported image mode {mode!r}")
    if mode in ("1", "L", "LA", "La"):
        gray = np.asarray(image.convert("L") if mode == "1" else image)
        gray = gray[..., 0] if gray.ndim == 3 else gray
        return np.repeat(gray[..., None], 3, axis=-1)
    if mode in ("RGB", "RGBA", "RGBa", "RGBX"):
        return np.asarray(image)[..., :3].copy()
    if mode in ("P", "PA"):  # through RGBA so Pillow does not warn about palette transparency
        return np.asarray(image.convert("RGBA"))[..., :3].copy()
    return np.asarray(image.convert("RGB"))


def to_float(pixels):
    """uint8/uint16 (..., 3) integers -> float32 in [0, 1]; float input is returned as float32."""
    if pixels.dtype == np.uint8:
        return pixels.astype(np.float32) * np.float32(1 / 255)
    if pixels.dtype == np.uint16:
        return pixels.astype(np.float32) * np.float32(1 / 65535)
    return np.asarray(pixels, dtype=np.float32)


def read_image(path):
    """Reads an image file as RGB float32 in [0, 1], shape (H, W, 3) (conversions: module doc)."""
    return to_float(read_image_array(path, np.uint16 if _is_sixteen_bit(path) else np.uint8))


def _is_sixteen_bit(path):
    return Path(path).suffix.lower() == ".png" and _png_bit_depth(path) == 16


def to_uint8(image):
    """float image in [0, 1] -> uint8, clipped and rounded (the official 8-bit convention)."""
    return np.round(np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0) * 255.0).astype(np.uint8)


def write_png(path, image):
    """Writes an RGB image as an 8-bit PNG atomically (`keras_mhdeblur.utils.files`).

    Args:
        path: destination file; its folder is created if missing.
        image: (H, W, 3) uint8, or float in [0, 1] (clipped and rounded to 8 bits).
    """
    pixels = image if np.asarray(image).dtype == np.uint8 else to_uint8(image)
    picture = Image.fromarray(np.ascontiguousarray(pixels))
    return write_file_atomically(path, lambda temporary: picture.save(temporary, format="PNG"))
