"""Turn what a request names as an image or a video into decoded RGB PIL images.

Accepted sources: a PIL image, raw bytes, base64 (plain or a `data:` URL), an http(s) URL (fetched
by `url_fetch`, never from private addresses unless allowed), a file path or `file://` URL (only
inside the directory given by --allow-local-media-path), and the OpenAI shapes {"url": ...} /
{"type": "image_url", "image_url": {"url": ...}}. A video is also a list of frames, each any image
source. The bytes decide the format (never a file extension), every limit is checked before the
expensive step it guards, and every failure is a ValueError (`MediaError`) that says what to change.

This runs in the tokenization worker pool; a MediaLoader holds only its options, so one instance
serves every thread.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import io
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Optional
from urllib.parse import unquote, unquote_to_bytes, urlsplit

from PIL import Image, ImageOps, UnidentifiedImageError

from sglang.runtime.multimodal.url_fetch import FetchLimits, fetch_url

IMAGE_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP")  # what PIL may try; others are refused by name
_IMAGE_KINDS = "PNG/JPEG/WebP/GIF/BMP"
_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")
_MIN_BARE_BASE64 = 32  # shorter strings of base64 letters are more likely file names than images
_NO_PYAV = "decoding video files needs PyAV (pip install av); or send the frames as a list of images"

# Formats recognised only to name them in the refusal: (magic prefix, offset, name).
_KNOWN_OTHER_FORMATS = (
    (b"II*\x00", 0, "TIFF"), (b"MM\x00*", 0, "TIFF"), (b"8BPS", 0, "PSD"), (b"%PDF", 0, "PDF"),
    (b"\x00\x00\x01\x00", 0, "ICO"), (b"ftypheic", 4, "HEIC"), (b"ftypheix", 4, "HEIC"),
    (b"ftypmif1", 4, "HEIF"), (b"ftypavif", 4, "AVIF"), (b"\xff\x0a", 0, "JPEG XL"),
    (b"\x00\x00\x00\x0cJXL ", 0, "JPEG XL"), (b"<svg", 0, "SVG"), (b"<?xml", 0, "SVG/XML"),
)
_VIDEO_MAGIC = ((b"ftyp", 4, "MP4/MOV"), (b"\x1aE\xdf\xa3", 0, "WebM/Matroska"), (b"AVI ", 8, "AVI"))


class MediaError(ValueError):
    """A request's image or video cannot be used; the message says why and what to change."""


@dataclass(frozen=True)
class MediaOptions:
    allow_local_media_path: Optional[str] = None  # a directory; file paths inside it may be read, none otherwise
    allow_private_media_urls: bool = False  # http(s) URLs to private/loopback/link-local addresses
    max_image_bytes: int = 20 << 20  # encoded size limit per image (and per fetched URL)
    max_image_pixels: int = 40_000_000  # decoded width*height limit (decompression bombs)
    max_video_bytes: int = 200 << 20
    max_video_frames: int = 64
    media_fetch_timeout: float = 10.0  # seconds for a whole URL download

    def __post_init__(self) -> None:
        for name in ("max_image_bytes", "max_image_pixels", "max_video_bytes", "max_video_frames"):
            if getattr(self, name) <= 0:
                raise ValueError(f"--{_flag(name)} must be positive, got {getattr(self, name)}")
        if not self.media_fetch_timeout > 0:
            raise ValueError(f"--media-fetch-timeout must be positive, got {self.media_fetch_timeout}")
        root = self.allow_local_media_path
        if root is not None and not os.path.isdir(root):
            raise ValueError(f"--allow-local-media-path {root}: not a directory; name the directory "
                             f"whose files requests may read")

    @classmethod
    def from_server_args(cls, server_args: Any) -> "MediaOptions":
        """The options from a ServerArgs (fields of the same names; ones it lacks keep their default)."""
        names = [f.name for f in dataclasses.fields(cls) if hasattr(server_args, f.name)]
        return cls(**{name: getattr(server_args, name) for name in names})


@dataclass(frozen=True)
class _Kind:
    """What is being loaded: the word used in errors and the size limit that applies."""

    word: str
    max_bytes: int
    bytes_flag: str


class MediaLoader:
    def __init__(self, options: MediaOptions = MediaOptions()):
        self.options = options
        # Resolved once: the allowed directory itself may be a symlink.
        root = options.allow_local_media_path
        self._root = os.path.realpath(root) if root is not None else None
        self._image = _Kind("image", options.max_image_bytes, "--max-image-bytes")
        self._video = _Kind("video", options.max_video_bytes, "--max-video-bytes")

    # ---------------------------------------------------------------- public
    def load_image(self, source: Any) -> Image.Image:
        if isinstance(source, Image.Image):
            return self._finish_image(source)
        return self._decode_image(self._read(source, self._image))

    def load_video(self, source: Any) -> List[Image.Image]:
        if isinstance(source, (list, tuple)):
            return self._load_frames(source)
        return self._decode_video(self._read(source, self._video))

    # ---------------------------------------------------------------- sources -> bytes
    def _read(self, source: Any, kind: _Kind) -> bytes:
        if isinstance(source, dict):
            return self._read(_url_of(source, kind), kind)
        if isinstance(source, (bytes, bytearray, memoryview)):
            return _within_limit(bytes(source), kind)
        if isinstance(source, Path):
            return self._read_file(str(source), kind)
        if isinstance(source, str):
            return self._read_text(source.strip(), kind)
        raise MediaError(f"a {kind.word} must be bytes, a base64 string, a data: or http(s) URL, a file path "
                         f"or {{'url': ...}}; got {type(source).__name__}")

    def _read_text(self, text: str, kind: _Kind) -> bytes:
        if not text:
            raise MediaError(f"the {kind.word} is an empty string; send base64 data or a URL")
        if text[:5].lower() == "data:":
            return _decode_data_url(text, kind)
        scheme = urlsplit(text).scheme.lower() if "://" in text[:16] else ""
        if scheme in ("http", "https"):
            limits = FetchLimits(kind.max_bytes, self.options.media_fetch_timeout,
                                 self.options.allow_private_media_urls, kind.bytes_flag)
            return fetch_url(text, limits)
        if scheme == "file":
            return self._read_file(_file_url_path(text), kind)
        if scheme:
            raise MediaError(f"{kind.word} URL scheme {scheme}: is not supported; use http(s), a data: URL, "
                             f"base64, or a file path")
        compact = "".join(text.split())
        if len(compact) >= _MIN_BARE_BASE64 and len(compact) % 4 == 0 and _BASE64.fullmatch(compact):
            return _decode_base64(compact, kind)
        return self._read_file(text, kind)

    def _read_file(self, path: str, kind: _Kind) -> bytes:
        if self._root is None:
            raise MediaError(f"the {kind.word} {_clip(path)!r} is not base64 or a data:/http(s) URL, and file "
                             f"paths are disabled; start the server with --allow-local-media-path DIR to read "
                             f"files under DIR")
        # realpath resolves symlinks and '..', so the containment check sees the real target.
        # Relative paths are taken inside the allowed directory.
        real = os.path.realpath(os.path.join(self._root, path))
        if os.path.commonpath([self._root, real]) != self._root:
            raise MediaError(f"{kind.word} path {_clip(path)!r} is outside the allowed media directory "
                             f"{self._root} (--allow-local-media-path)")
        if not os.path.exists(real):
            raise MediaError(f"no such {kind.word} file: {_clip(path)!r} (looked for {real}; if it was meant "
                             f"as base64 data, it is not valid base64)")
        if not os.path.isfile(real):
            raise MediaError(f"{kind.word} path {_clip(path)!r} is not a regular file")
        size = os.path.getsize(real)
        if size > kind.max_bytes:
            raise _too_many_bytes(kind, size)
        with open(real, "rb") as f:
            return _within_limit(f.read(kind.max_bytes + 1), kind)

    # ---------------------------------------------------------------- images
    def _decode_image(self, data: bytes) -> Image.Image:
        if not data:
            raise MediaError("the image is empty (0 bytes)")
        try:
            img = Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)
        except Image.DecompressionBombError as exc:
            # PIL's own cap (2 * Image.MAX_IMAGE_PIXELS) fires in open(), before our check can.
            raise MediaError(f"the image has too many pixels to decode ({exc}); send a smaller image "
                             f"(--max-image-pixels is {self.options.max_image_pixels:,}; the decoder refuses "
                             f"this size whatever the flag)") from None
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
            raise MediaError(_unrecognised_message(data)) from None
        return self._finish_image(img)

    def _finish_image(self, img: Image.Image) -> Image.Image:
        self._check_pixels(img.width, img.height, "the image")
        try:
            img.load()  # decode now, so a truncated or corrupt file fails here and not in the processor
            img = ImageOps.exif_transpose(img)  # photos store rotation in EXIF; the pixels should show it
            return _to_rgb(img)
        except Exception as exc:  # noqa: BLE001 - any decoder failure on untrusted bytes is bad input
            raise MediaError(f"could not decode the image (is it a {_IMAGE_KINDS}?): {exc}") from None

    def _check_pixels(self, width: int, height: int, what: str) -> None:
        limit = self.options.max_image_pixels
        if width * height > limit:
            raise MediaError(f"{what} is {width}x{height} = {width * height:,} pixels, over the limit of "
                             f"{limit:,}; send a smaller image or raise --max-image-pixels")

    # ---------------------------------------------------------------- videos
    def _load_frames(self, frames) -> List[Image.Image]:
        if not frames:
            raise MediaError("the video has no frames; send at least one")
        limit = self.options.max_video_frames
        if len(frames) > limit:
            raise MediaError(f"the video has {len(frames)} frames, over the limit of {limit}; send fewer "
                             f"frames or raise --max-video-frames")
        return [self.load_image(frame) for frame in frames]

    def _decode_video(self, data: bytes) -> List[Image.Image]:
        if not data:
            raise MediaError("the video is empty (0 bytes)")
        try:
            import av
        except ImportError:
            raise MediaError(_NO_PYAV) from None
        try:
            total = _count_video_packets(av, data)
            if total == 0:
                raise MediaError("the video file has no video frames")
            return self._sample_frames(av, data, _even_indices(total, self.options.max_video_frames))
        except MediaError:
            raise
        except Exception as exc:  # noqa: BLE001 - any demuxer/decoder failure on untrusted bytes is bad input
            raise MediaError(f"could not decode the video (is it MP4/WebM/MKV/AVI/MOV?): {exc}") from None

    def _sample_frames(self, av, data: bytes, wanted: List[int]) -> List[Image.Image]:
        targets, last = set(wanted), wanted[-1]
        frames: List[Image.Image] = []
        with av.open(io.BytesIO(data), mode="r") as container:
            stream = container.streams.video[0]
            ctx = stream.codec_context
            self._check_pixels(ctx.width, ctx.height, "a video frame")
            for index, frame in enumerate(container.decode(stream)):
                if index in targets:
                    self._check_pixels(frame.width, frame.height, "a video frame")
                    frames.append(frame.to_image().convert("RGB"))
                if index >= last:
                    break
        if not frames:
            raise MediaError("no frame of the video could be decoded; check the file")
        return frames


# -------------------------------------------------------------------- helpers
def _url_of(source: dict, kind: _Kind) -> Any:
    """The URL inside {"url": ...} or {"type": "image_url", "image_url": {"url": ...}} (video_url too)."""
    if "url" in source:
        return source["url"]
    for key in ("image_url", "video_url"):
        inner = source.get(key)
        if isinstance(inner, dict) and "url" in inner:
            return inner["url"]
        if isinstance(inner, str):
            return inner
    raise MediaError(f"a {kind.word} given as a dict needs {{'url': ...}} or {{'type': 'image_url', "
                     f"'image_url': {{'url': ...}}}}; got keys {sorted(map(str, source))}")


def _decode_data_url(text: str, kind: _Kind) -> bytes:
    header, comma, payload = text.partition(",")
    if not comma:
        raise MediaError(f"the {kind.word} data: URL has no ',' before its data")
    if header.lower().endswith(";base64"):
        return _decode_base64("".join(payload.split()), kind)
    return _within_limit(unquote_to_bytes(payload), kind)


def _decode_base64(text: str, kind: _Kind) -> bytes:
    if len(text) // 4 * 3 > kind.max_bytes + 2:  # refuse before allocating the decoded copy
        raise _too_many_bytes(kind, len(text) // 4 * 3)
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MediaError(f"the {kind.word} is not valid base64 ({exc}); send standard base64 "
                         f"(A-Z a-z 0-9 + /, '=' padding)") from None
    return _within_limit(data, kind)


def _file_url_path(url: str) -> str:
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise MediaError(f"file: URL {_clip(url)!r} names host {parts.netloc!r}; only local files "
                         f"(file:///path) can be read")
    return unquote(parts.path)


def _within_limit(data: bytes, kind: _Kind) -> bytes:
    if len(data) > kind.max_bytes:
        raise _too_many_bytes(kind, len(data))
    return data


def _too_many_bytes(kind: _Kind, size: int) -> MediaError:
    return MediaError(f"the {kind.word} is {size:,} bytes, over the limit of {kind.max_bytes:,}; send a smaller "
                      f"file or raise {kind.bytes_flag}")


def _unrecognised_message(data: bytes) -> str:
    for magic, offset, name in _VIDEO_MAGIC:
        if data[offset:offset + len(magic)] == magic:
            return f"the image is a {name} video, not an image; send it as video data, or send a {_IMAGE_KINDS} image"
    for magic, offset, name in _KNOWN_OTHER_FORMATS:
        if data[offset:offset + len(magic)] == magic:
            return f"unsupported image format {name}; convert it to {_IMAGE_KINDS}"
    return f"could not decode the image (is it a {_IMAGE_KINDS}?)"


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode == "RGB":
        return img
    if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
        # Transparent pixels become white, as transformers' convert_to_rgb does, not whatever
        # colour happens to sit under alpha 0.
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def _count_video_packets(av, data: bytes) -> int:
    """Frames in the first video stream, counted from its packets (no decoding); the container's
    own frame count is metadata a file can misstate."""
    with av.open(io.BytesIO(data), mode="r") as container:
        if not container.streams.video:
            raise MediaError("the file has no video stream; send a video (MP4/WebM/MKV/AVI/MOV)")
        stream = container.streams.video[0]
        return sum(1 for packet in container.demux(stream) if packet.size)


def _even_indices(total: int, most: int) -> List[int]:
    """`min(total, most)` distinct frame indices spread evenly over [0, total), first and last included."""
    n = min(total, most)
    if n == 1:
        return [0]
    return [round(i * (total - 1) / (n - 1)) for i in range(n)]


def _flag(name: str) -> str:
    return name.replace("_", "-")


def _clip(text: str, keep: int = 80) -> str:
    return text if len(text) <= keep else text[:keep] + "..."
