"""What a ``sensor_msgs/CompressedImage`` holds, decided from its ``format`` and checked against its bytes, and its
decoding, optionally at a reduced scale (libjpeg's DCT-domain scaling), ROS-free.

Formats (sensor_msgs/msg/CompressedImage.msg and compressed_image_transport's conventions):

- a bare codec name, ``jpeg`` / ``jpg`` / ``png`` (any case), as nuScenes bags, Foxglove and most camera drivers
  write it: the payload is an ordinary file, decoded in its own channel order;
- ``ORIG_PIXFMT; CODEC compressed [COMPRESSED_PIXFMT]`` (compressed_image_transport: ``bgr8; jpeg compressed bgr8``,
  ``rgb8; png compressed bgr8``): ``ORIG_PIXFMT`` is the raw image's encoding and must be a colour one (``mono8``,
  ``mono16``, ``bayer_*``, ``16UC1``... are refused: the planner was trained on colour cameras); as the transport's
  own subscriber reads it, the payload's channels are BGR when the text after ``;`` contains ``compressed bgr`` and
  RGB otherwise (a sender that handed RGB rows to the encoder as they were);
- ``ORIG_PIXFMT; compressedDepth CODEC`` (compressed_depth_image_transport): a depth image, refused;
- an empty string: JPEG, as the message definition specifies.

Anything else (``h264``, ``tiff``, ``avif``, ``webp``, ``qoi``, ``theora``, ...) is refused with an ``encoding``
error naming the format, never decoded by guessing. The bytes must then agree with the format: a JPEG starts with the
SOI marker ``FF D8``, a PNG with its 8-byte signature, so PNG bytes declared ``jpeg`` (or an H.264 stream declared
``jpeg``) are an ``encoding`` error, while a JPEG/PNG whose header cannot be read is a ``decode`` error (corrupt). The
header gives the full size before anything is decoded (to choose the scale), the bit depth and the channel count:
16-bit and single-channel payloads are refused rather than silently converted to 8-bit colour.

Scaled decoding: libjpeg can run its inverse DCT at 1/2, 1/4 or 1/8 of the size, which costs a fraction of a full
decode. Pixel ``i`` of a 1/s decode stands for the block ``[s*i, s*(i+1))`` of the full image; when a side is not a
multiple of ``s`` its last pixel stands for a partial block (the encoder padded the rest), so the reduced image spans
``W/s x H/s`` reduced pixels, not its integer size. :func:`dima_core.runtime.preprocess.resize_reduced` keeps that
geometry when it resizes the remainder.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from dima_core.runtime.input_error import InputError

Codec = Literal["jpeg", "png"]

JPEG_SOI = b"\xff\xd8"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# libjpeg's scale denominators; OpenCV names them IMREAD_REDUCED_COLOR_2/4/8.
JPEG_REDUCTIONS: tuple[int, ...] = (1, 2, 4, 8)
_IMREAD_FLAGS = {
    1: cv2.IMREAD_COLOR,
    2: cv2.IMREAD_REDUCED_COLOR_2,
    4: cv2.IMREAD_REDUCED_COLOR_4,
    8: cv2.IMREAD_REDUCED_COLOR_8,
}
_BARE_CODECS: dict[str, Codec] = {"jpeg": "jpeg", "jpg": "jpeg", "png": "png"}
# sensor_msgs/image_encodings: the colour encodings (isColor); anything else before the ';' is not a colour image.
COLOUR_ENCODINGS = frozenset({"rgb8", "bgr8", "rgba8", "bgra8", "rgb16", "bgr16", "rgba16", "bgra16"})
# Start-of-frame markers (baseline, extended, progressive, lossless; Huffman or arithmetic): they carry the size.
_JPEG_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
_PNG_COLOUR_TYPES = {0: "greyscale", 2: "RGB", 3: "palette", 4: "greyscale + alpha", 6: "RGBA"}


@dataclass(frozen=True)
class CompressedFormat:
    """What a CompressedImage's ``format`` declares: the codec and whether the payload's channels are BGR."""

    codec: Codec
    bgr: bool  # decoded channels are B, G, R (a plain file; transport "compressed bgr"); False: already R, G, B
    text: str  # the format string as received, for messages


@dataclass(frozen=True)
class ImageHeader:
    """The full-size geometry and sample layout a JPEG/PNG header declares."""

    codec: Codec
    width: int
    height: int
    channels: int
    bit_depth: int


@dataclass(frozen=True)
class DecodedImage:
    """``pixels`` (h, w, 3) uint8 RGB of an image of ``full_width`` x ``full_height``, decoded at 1/``reduction``
    (1: full size): pixel ``i`` stands for the full image's block ``[reduction*i, reduction*(i+1))``, clipped to it."""

    pixels: np.ndarray
    full_width: int
    full_height: int
    reduction: int = 1


def parse_format(fmt: str, source: str = "image") -> CompressedFormat:
    """The codec and channel order ``fmt`` declares, or :class:`InputError` ``encoding`` naming what it is instead."""
    text = fmt if isinstance(fmt, str) else str(fmt)
    stripped = text.strip()
    if not stripped:
        return CompressedFormat("jpeg", True, text)  # the message definition: empty means JPEG
    if ";" not in stripped:
        codec = _BARE_CODECS.get(stripped.lower())
        if codec is None:
            raise InputError(
                "encoding",
                f"{source}: CompressedImage format '{text}' is not JPEG or PNG; the planner "
                "decodes only 'jpeg'/'png' (image_transport 'compressed'): decode other "
                "codecs upstream",
            )
        return CompressedFormat(codec, True, text)
    original, rest = (part.strip() for part in stripped.split(";", 1))
    words = rest.lower().split()
    if words and words[0] == "compresseddepth":
        raise InputError(
            "encoding",
            f"{source}: CompressedImage format '{text}' is a depth image "
            "(compressed_depth_image_transport), not a colour camera image",
        )
    codec = _BARE_CODECS.get(words[0]) if words else None
    if codec is None or (len(words) > 1 and words[1] != "compressed") or len(words) > 3:
        raise InputError(
            "encoding",
            f"{source}: CompressedImage format '{text}' is not JPEG or PNG in "
            "compressed_image_transport's 'ORIG_PIXFMT; CODEC compressed [PIXFMT]' form; "
            "the planner decodes only jpeg and png",
        )
    if original.lower() not in COLOUR_ENCODINGS:
        raise InputError(
            "encoding",
            f"{source}: CompressedImage format '{text}': the image was '{original}', not a "
            f"colour image; the planner needs 8-bit colour cameras ({sorted(COLOUR_ENCODINGS)}"
            " before compression)",
        )
    packed = words[2] if len(words) > 2 else ""
    if packed and packed not in ("bgr8", "rgb8"):
        raise InputError(
            "encoding",
            f"{source}: CompressedImage format '{text}': the payload is '{packed}'; the "
            "planner needs 8-bit colour (bgr8 or rgb8), not 16-bit samples",
        )
    return CompressedFormat(codec, "compressed bgr" in rest.lower(), text)


def as_uint8(data: bytes | bytearray | memoryview | np.ndarray | Sequence[int]) -> np.ndarray:
    """The message's bytes as a flat uint8 array, without a copy for bytes-like data (rclpy's array('B'))."""
    if isinstance(data, np.ndarray):
        return data.reshape(-1).astype(np.uint8, copy=False)
    try:
        return np.frombuffer(data, dtype=np.uint8)  # type: ignore[arg-type]
    except TypeError:  # a plain sequence of ints
        return np.asarray(data, dtype=np.uint8).reshape(-1)


def _looks_like(head: bytes) -> str:
    """What the first bytes suggest, for messages only (never used to pick a decoder)."""
    if head.startswith(PNG_SIGNATURE):
        return "PNG data"
    if head.startswith(JPEG_SOI):
        return "JPEG data"
    if head[:4] in (b"\x00\x00\x00\x01",) or head[:3] == b"\x00\x00\x01":
        return "an H.264/H.265 Annex-B stream (start code)"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF data"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP data"
    if head[4:8] == b"ftyp":
        return "an ISO-BMFF file (AVIF/HEIF/MP4)"
    return "unknown data"


def _jpeg_header(buf: memoryview) -> tuple[int, int, int, int]:
    """(width, height, components, precision) from the first start-of-frame segment; ValueError says why not."""
    n, i = len(buf), 2
    while True:
        if i >= n:
            raise ValueError("no frame header (SOF) before the end of the data")
        if buf[i] != 0xFF:
            raise ValueError(f"expected a marker at byte {i}, found 0x{buf[i]:02X}")
        while i < n and buf[i] == 0xFF:  # fill bytes may precede a marker
            i += 1
        if i >= n:
            raise ValueError("truncated before the frame header")
        marker = buf[i]
        i += 1
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # TEM, RSTn: no length
            continue
        if marker in (0xD8, 0xD9, 0xDA):
            raise ValueError(f"marker 0xFF{marker:02X} before the frame header")
        if i + 2 > n:
            raise ValueError("truncated segment length")
        length = (buf[i] << 8) | buf[i + 1]
        if length < 2:
            raise ValueError(f"segment 0xFF{marker:02X} has length {length}")
        if marker in _JPEG_SOF:
            if length < 8 or i + 8 > n:
                raise ValueError("truncated frame header")
            precision = buf[i + 2]
            height = (buf[i + 3] << 8) | buf[i + 4]
            width = (buf[i + 5] << 8) | buf[i + 6]
            return width, height, buf[i + 7], precision
        i += length


def read_header(buf: np.ndarray, spec: CompressedFormat, source: str = "image") -> ImageHeader:
    """The header of ``buf`` (the declared codec's), after checking the magic number against the declaration.

    Raises :class:`InputError`: ``encoding`` for bytes of another kind than declared or an image the planner cannot
    take (greyscale, 16-bit, CMYK), ``decode`` for a header that cannot be read (corrupt or truncated data).
    """
    head = buf[:16].tobytes()
    magic = JPEG_SOI if spec.codec == "jpeg" else PNG_SIGNATURE
    if not head.startswith(magic):
        raise InputError(
            "encoding",
            f"{source}: CompressedImage format '{spec.text}' declares {spec.codec.upper()} "
            f"but the data is {_looks_like(head)} (first bytes {head[:8].hex(' ')}); "
            "refused, not decoded by guessing",
        )
    corrupt = f"{source}: corrupt or undecodable CompressedImage ({buf.size} bytes, format '{spec.text}')"
    if spec.codec == "jpeg":
        try:
            width, height, channels, depth = _jpeg_header(memoryview(buf))
        except ValueError as exc:
            raise InputError("decode", f"{corrupt}: {exc}") from None
        if channels != 3:
            what = {1: "a greyscale (1-component)", 4: "a CMYK/YCCK (4-component)"}.get(
                channels, f"a {channels}-component"
            )
            raise InputError("encoding", f"{source}: {what} JPEG; the planner needs colour (3-component) images")
        if depth != 8:
            raise InputError("encoding", f"{source}: a {depth}-bit JPEG; the planner needs 8-bit samples")
    else:
        ihdr = buf[8:26].tobytes()
        if len(ihdr) < 18 or ihdr[4:8] != b"IHDR":
            raise InputError("decode", f"{corrupt}: no IHDR chunk after the PNG signature")
        width, height = int.from_bytes(ihdr[8:12], "big"), int.from_bytes(ihdr[12:16], "big")
        depth, colour = ihdr[16], ihdr[17]
        kind = _PNG_COLOUR_TYPES.get(colour)
        if kind is None:
            raise InputError("decode", f"{corrupt}: PNG colour type {colour} does not exist")
        if colour in (0, 4):
            raise InputError("encoding", f"{source}: a {kind} PNG; the planner needs colour images")
        if depth != 8 and not (colour == 3 and depth < 8):
            raise InputError(
                "encoding",
                f"{source}: a {depth}-bit {kind} PNG; the planner needs 8-bit samples "
                "(16-bit images are not converted by guessing a scale)",
            )
        channels = 4 if colour == 6 else 3
    if width <= 0 or height <= 0:
        raise InputError("decode", f"{corrupt}: header declares a {width}x{height} image")
    return ImageHeader(spec.codec, width, height, channels, depth)


def jpeg_reduction(full_wh: tuple[int, int], target_wh: tuple[int, int], max_reduction: int = 8) -> int:
    """The largest libjpeg reduction (<= ``max_reduction``) whose image still spans at least ``target_wh``.

    The span is ``full / s`` (the partial last block counts by its share), so the remaining resize is a shrink (or
    the identity) in both directions; 1 when even 1/2 would be smaller than the target.
    """
    width, height = full_wh
    tw, th = target_wh
    for s in sorted(JPEG_REDUCTIONS, reverse=True):
        if 1 < s <= max_reduction and width >= s * tw and height >= s * th:
            return s
    return 1


def decode_image(
    data: bytes | bytearray | memoryview | np.ndarray | Sequence[int],
    fmt: str = "jpeg",
    source: str = "image",
    target_wh: tuple[int, int] | None = None,
    max_reduction: int = 1,
) -> DecodedImage:
    """Decode CompressedImage bytes to RGB, checked against ``fmt`` first.

    With ``target_wh`` and ``max_reduction`` > 1 a JPEG is decoded at :func:`jpeg_reduction` of its header size;
    PNG has no scaled decoding and is always decoded at full size. ``max_reduction`` 1 decodes exactly as the training
    loader reads files (``IMREAD_COLOR``).
    """
    if max_reduction not in JPEG_REDUCTIONS:
        raise ValueError(f"max_reduction must be one of {JPEG_REDUCTIONS}, got {max_reduction}")
    buf = as_uint8(data)
    if buf.size == 0:
        raise InputError("decode", f"{source}: empty CompressedImage (format '{fmt}')")
    spec = parse_format(fmt, source)
    header = read_header(buf, spec, source)
    reduction = 1
    if spec.codec == "jpeg" and target_wh is not None and max_reduction > 1:
        reduction = jpeg_reduction((header.width, header.height), target_wh, max_reduction)
    image = cv2.imdecode(buf, _IMREAD_FLAGS[reduction])
    if image is None or image.ndim != 3 or image.size == 0:
        raise InputError(
            "decode", f"{source}: corrupt or undecodable CompressedImage ({buf.size} bytes, format '{fmt}')"
        )
    expected = (math.ceil(header.height / reduction), math.ceil(header.width / reduction))
    if image.shape[:2] != expected:
        raise InputError(
            "decode",
            f"{source}: decoded {image.shape[1]}x{image.shape[0]} but the {spec.codec} "
            f"header declares {header.width}x{header.height} (decoded at 1/{reduction}); an "
            "EXIF orientation tag rotating the image?",
        )
    if spec.bgr:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    return DecodedImage(image, header.width, header.height, reduction)


__all__ = [
    "COLOUR_ENCODINGS",
    "Codec",
    "CompressedFormat",
    "DecodedImage",
    "ImageHeader",
    "JPEG_REDUCTIONS",
    "JPEG_SOI",
    "PNG_SIGNATURE",
    "as_uint8",
    "decode_image",
    "jpeg_reduction",
    "parse_format",
    "read_header",
]
