"""Images and video frames for `sgl.image` / `sgl.video`: load once, hand out as data URLs.

Backends send images as OpenAI `image_url` parts (data URLs) or as the runtime's `image_data`
strings; both come from `ImageInput`.
"""

from __future__ import annotations

import base64
import io
import mimetypes
import os
from dataclasses import dataclass
from typing import Union

_MAGIC = ((b"\x89PNG", "image/png"), (b"\xff\xd8\xff", "image/jpeg"), (b"GIF8", "image/gif"),
          (b"RIFF", "image/webp"), (b"BM", "image/bmp"))


@dataclass(frozen=True)
class ImageInput:
    """An image ready to send: either a remote URL or bytes with their MIME type."""

    data: bytes = b""
    mime: str = "image/png"
    url: str = ""  # http(s) URL passed through untouched

    def to_url(self) -> str:
        """An `image_url` value: the remote URL or a base64 data URL."""
        if self.url:
            return self.url
        return f"data:{self.mime};base64,{base64.b64encode(self.data).decode()}"


def _sniff_mime(data: bytes) -> str:
    for magic, mime in _MAGIC:
        if data.startswith(magic):
            return mime
    return "application/octet-stream"


def load_image(source: Union[str, bytes, os.PathLike]) -> ImageInput:
    """Bytes, a file path, an http(s) URL or a data URL → ImageInput (files are read now)."""
    if isinstance(source, (bytes, bytearray)):
        if not source:
            raise ValueError("sgl.image got empty bytes")
        return ImageInput(bytes(source), _sniff_mime(bytes(source)))
    if isinstance(source, os.PathLike):
        source = os.fspath(source)
    if not isinstance(source, str):
        raise TypeError(f"sgl.image takes a path, URL or bytes, got {type(source).__name__}")
    if source.startswith(("http://", "https://")):
        return ImageInput(url=source)
    if source.startswith("data:"):
        header, _, payload = source.partition(",")
        return ImageInput(base64.b64decode(payload), header[5:].split(";")[0] or "image/png")
    if not os.path.isfile(source):
        raise FileNotFoundError(f"sgl.image: no such file {source!r}")
    with open(source, "rb") as f:
        data = f.read()
    mime = mimetypes.guess_type(source)[0] or _sniff_mime(data)
    return ImageInput(data, mime)


def load_video_frames(path: str, num_frames: int) -> list[ImageInput]:
    """`num_frames` frames sampled evenly from a video, each as a PNG image.

    Animated GIF/WebP/APNG are read with Pillow; other containers need PyAV (`pip install av`).
    """
    if num_frames < 1:
        raise ValueError(f"sgl.video(num_frames=...) must be >= 1, got {num_frames}")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"sgl.video: no such file {path!r}")
    frames = _frames_pillow(path)
    if frames is None:
        frames = _frames_av(path)
    if not frames:
        raise ValueError(f"sgl.video: {path!r} has no frames")
    step = len(frames) / num_frames
    picked = [frames[min(int(i * step), len(frames) - 1)] for i in range(min(num_frames, len(frames)))]
    return [_png(frame) for frame in picked]


def _frames_pillow(path: str) -> list | None:
    from PIL import Image, UnidentifiedImageError

    try:
        img = Image.open(path)
    except UnidentifiedImageError:
        return None
    frames = []
    for i in range(getattr(img, "n_frames", 1)):
        img.seek(i)
        frames.append(img.convert("RGB"))
    return frames


def _frames_av(path: str) -> list:
    try:
        import av  # optional: video containers
    except ImportError:
        raise ImportError(f"sgl.video: reading {path!r} needs PyAV (`pip install av`); "
                          f"animated GIF/WebP/PNG work without it") from None
    with av.open(path) as container:
        return [frame.to_image() for frame in container.decode(video=0)]


def _png(frame) -> ImageInput:
    buf = io.BytesIO()
    frame.save(buf, format="PNG")
    return ImageInput(buf.getvalue(), "image/png")
