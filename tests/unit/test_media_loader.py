"""MediaLoader: every accepted image/video source form, and a clear ValueError for every refusal
(bad bytes, limits, file paths, private-network URLs, redirects, slow servers)."""

from __future__ import annotations

import base64
import io
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import ip_address
from urllib.parse import parse_qs, urlsplit

import pytest
from PIL import Image

from sglang.runtime.multimodal import url_fetch
from sglang.runtime.multimodal.media import MediaError, MediaLoader, MediaOptions


def encode(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def sample_image(w: int = 8, h: int = 6) -> Image.Image:
    img = Image.new("RGB", (w, h), (10, 20, 30))
    img.putpixel((1, 2), (200, 100, 50))
    return img


PNG = encode(sample_image())


def data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def assert_sample(img: Image.Image) -> None:
    assert img.mode == "RGB" and img.size == (8, 6)
    assert img.getpixel((1, 2)) == (200, 100, 50)


# ------------------------------------------------------------------------- image forms
def test_pil_image_comes_back_rgb_with_transparency_on_white():
    rgba = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    rgba.putpixel((0, 0), (255, 0, 0, 255))
    out = MediaLoader().load_image(rgba)
    assert out.mode == "RGB"
    assert out.getpixel((0, 0)) == (255, 0, 0) and out.getpixel((1, 1)) == (255, 255, 255)
    assert MediaLoader().load_image(Image.new("L", (3, 3), 7)).getpixel((0, 0)) == (7, 7, 7)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "GIF", "BMP"])
def test_each_supported_format_decodes_from_bytes(fmt):
    img = MediaLoader().load_image(encode(sample_image(), fmt))
    assert img.mode == "RGB" and img.size == (8, 6)


def test_bytes_base64_and_data_urls():
    loader = MediaLoader()
    b64 = base64.b64encode(PNG).decode()
    wrapped = "\n".join(b64[i:i + 40] for i in range(0, len(b64), 40))  # MIME-style line breaks
    for source in (PNG, bytearray(PNG), memoryview(PNG), b64, wrapped, data_url(PNG),
                   data_url(PNG, "image/jpeg")):  # the declared type is not trusted either
        assert_sample(loader.load_image(source))


def test_openai_dict_shapes():
    loader = MediaLoader()
    assert_sample(loader.load_image({"url": data_url(PNG)}))
    assert_sample(loader.load_image({"type": "image_url", "image_url": {"url": data_url(PNG), "detail": "low"}}))
    with pytest.raises(ValueError, match="needs {'url': ...}"):
        loader.load_image({"type": "image_url", "link": "x"})


def test_exif_orientation_is_applied():
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90 degrees: stored 8x6, shown 6x8
    img = MediaLoader().load_image(encode(sample_image(), "JPEG", exif=exif))
    assert img.size == (6, 8)


# ------------------------------------------------------------------------- image refusals
def test_corrupt_and_truncated_images():
    loader = MediaLoader()
    with pytest.raises(ValueError, match=r"could not decode the image \(is it a PNG/JPEG/WebP/GIF/BMP\?\)"):
        loader.load_image(b"this is not an image at all, just text")
    big = encode(Image.effect_noise((64, 64), 50).convert("RGB"))
    with pytest.raises(ValueError, match="could not decode the image"):
        loader.load_image(big[: len(big) // 2])  # header fine, pixel data cut: fails in .load()
    with pytest.raises(ValueError, match="empty"):
        loader.load_image(b"")


def test_unsupported_formats_are_named():
    loader = MediaLoader()
    with pytest.raises(ValueError, match="unsupported image format TIFF"):
        loader.load_image(encode(sample_image(), "TIFF"))
    with pytest.raises(ValueError, match="MP4/MOV video, not an image"):
        loader.load_image(b"\x00\x00\x00\x18ftypisom" + bytes(32))


def test_image_byte_limit_names_the_flag():
    loader = MediaLoader(MediaOptions(max_image_bytes=len(PNG) - 1))
    for source in (PNG, base64.b64encode(PNG).decode(), data_url(PNG)):
        with pytest.raises(ValueError, match=r"over the limit of .*--max-image-bytes"):
            loader.load_image(source)
    assert_sample(MediaLoader(MediaOptions(max_image_bytes=len(PNG))).load_image(PNG))


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def bomb_png(width: int, height: int) -> bytes:
    """A valid 1-bit PNG of all zeros: a few KB on disk, width*height pixels once decoded."""
    raw = zlib.compress((b"\x00" * (1 + (width + 7) // 8)) * height, 9)
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", raw) + _png_chunk(b"IEND", b"")


def test_decompression_bomb_refused_on_pixels():
    bomb = bomb_png(7000, 7000)
    assert len(bomb) < 20_000
    with pytest.raises(ValueError, match=r"7000x7000 = 49,000,000 pixels, over the limit of 40,000,000.*--max-image-pixels"):
        MediaLoader().load_image(bomb)
    header_only = (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", 100_000, 100_000, 1, 0, 0, 0, 0))
                   + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 100)))
    with pytest.raises(ValueError, match="too many pixels"):  # past PIL's own cap: refused at open
        MediaLoader(MediaOptions(max_image_pixels=10**11)).load_image(header_only)
    with pytest.raises(ValueError, match=r"too many pixels.*--max-image-pixels is 40,000,000"):
        MediaLoader().load_image(header_only)
    with pytest.raises(ValueError, match="--max-image-pixels"):
        MediaLoader(MediaOptions(max_image_pixels=47)).load_image(sample_image())  # PIL inputs too


def test_bad_sources():
    loader = MediaLoader()
    with pytest.raises(ValueError, match="got int"):
        loader.load_image(42)
    with pytest.raises(ValueError, match="not valid base64"):
        loader.load_image("data:image/png;base64,@@@@")
    with pytest.raises(ValueError, match="scheme ftp: is not supported"):
        loader.load_image("ftp://example.com/a.png")
    with pytest.raises(ValueError, match="empty string"):
        loader.load_image("  ")


# ------------------------------------------------------------------------- local files
def test_file_paths_disabled_by_default(tmp_path):
    (tmp_path / "a.png").write_bytes(PNG)
    for source in (str(tmp_path / "a.png"), tmp_path / "a.png", f"file://{tmp_path}/a.png"):
        with pytest.raises(ValueError, match="file paths are disabled; start the server with --allow-local-media-path DIR"):
            MediaLoader().load_image(source)


def test_file_paths_inside_the_allowed_directory(tmp_path):
    root = tmp_path / "media"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "a.png").write_bytes(PNG)
    (root / "photo.jpg").write_bytes(PNG)  # extension lies: the bytes decide
    (root / "notes.png").write_bytes(b"plain text, named like an image")
    (root / "link.png").symlink_to(root / "sub" / "a.png")
    loader = MediaLoader(MediaOptions(allow_local_media_path=str(root)))
    for source in (str(root / "sub" / "a.png"), root / "sub" / "a.png", "sub/a.png", "sub/../photo.jpg",
                   f"file://{root}/sub/a.png", f"file://localhost{root}/link.png"):
        assert_sample(loader.load_image(source))
    with pytest.raises(ValueError, match="could not decode the image"):
        loader.load_image("notes.png")


def test_file_path_refusals(tmp_path):
    root = tmp_path / "media"
    root.mkdir()
    (tmp_path / "secret.png").write_bytes(PNG)
    (root / "escape.png").symlink_to(tmp_path / "secret.png")
    (root / "dir").mkdir()
    loader = MediaLoader(MediaOptions(allow_local_media_path=str(root)))
    for source in (str(tmp_path / "secret.png"), "../secret.png", "escape.png", f"file://{tmp_path}/secret.png"):
        with pytest.raises(ValueError, match="outside the allowed media directory"):
            loader.load_image(source)
    with pytest.raises(ValueError, match="no such image file"):
        loader.load_image("missing.png")
    with pytest.raises(ValueError, match="not a regular file"):
        loader.load_image("dir")
    with pytest.raises(ValueError, match="only local files"):
        loader.load_image("file://otherhost/etc/passwd")
    (root / "big.png").write_bytes(PNG)
    with pytest.raises(ValueError, match="--max-image-bytes"):
        MediaLoader(MediaOptions(allow_local_media_path=str(root), max_image_bytes=10)).load_image("big.png")


# ------------------------------------------------------------------------- URLs
class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # keep test output clean
        pass

    def _send(self, status: int, body: bytes = b"", headers: dict = (), length: bool = True) -> None:
        self.send_response(status)
        for key, value in dict(headers).items():
            self.send_header(key, value)
        if length:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):  # noqa: N802 - http.server's name
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        self.server.seen_hosts.append(self.headers.get("Host"))
        path = parts.path
        if path == "/img.png":
            self._send(200, PNG, {"Content-Type": "image/png"})
        elif path == "/missing":
            self._send(404, b"no")
        elif path == "/to":
            self._send(302, headers={"Location": query["loc"]})
        elif path.startswith("/hops/"):
            n = int(path.rsplit("/", 1)[1])
            self._send(302, headers={"Location": f"/hops/{n - 1}" if n else "/img.png"})
        elif path == "/big":
            self._send(200, PNG + bytes(5000))
        elif path == "/stream":  # no Content-Length: the client must count
            self.close_connection = True
            self._send(200, headers={"Connection": "close"}, length=False)
            for _ in range(200):
                self.wfile.write(bytes(64 * 1024))
        elif path == "/slow":
            self.server.stop.wait(3)
            self._send(200, PNG)
        elif path == "/trickle":
            self._send(200, headers={"Content-Length": "1000"}, length=False)
            for _ in range(60):
                if self.server.stop.wait(0.05):
                    break
                self.wfile.write(b"x")
                self.wfile.flush()


@pytest.fixture(scope="module")
def http_server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.daemon_threads = True
    srv.seen_hosts, srv.stop = [], threading.Event()
    srv.handle_error = lambda *a: None  # clients hang up on purpose in the limit tests
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    srv.stop.set()
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def server(http_server):
    http_server.seen_hosts.clear()
    return http_server


def base(srv) -> str:
    return f"http://127.0.0.1:{srv.server_address[1]}"


PRIVATE = MediaOptions(allow_private_media_urls=True)


def test_loopback_url_refused_by_default_and_allowed_by_flag(server):
    with pytest.raises(ValueError, match=r"loopback address 127.0.0.1.*--allow-private-media-urls"):
        MediaLoader().load_image(base(server) + "/img.png")
    with pytest.raises(ValueError, match="loopback"):  # refused before any TLS is attempted
        MediaLoader().load_image("https://127.0.0.1:1/img.png")
    assert server.seen_hosts == []
    loader = MediaLoader(PRIVATE)
    assert_sample(loader.load_image(base(server) + "/img.png"))
    assert_sample(loader.load_image({"type": "image_url", "image_url": {"url": base(server) + "/img.png"}}))


def test_http_errors_and_redirect_count(server):
    loader = MediaLoader(PRIVATE)
    with pytest.raises(ValueError, match="answered HTTP 404"):
        loader.load_image(base(server) + "/missing")
    assert_sample(loader.load_image(base(server) + "/hops/2"))  # 3 redirects: followed
    with pytest.raises(ValueError, match="redirected more than 3 times"):
        loader.load_image(base(server) + "/hops/3")
    with pytest.raises(ValueError, match="scheme file: is not supported"):
        loader.load_image(base(server) + "/to?loc=file:///etc/passwd")


def test_download_size_limit(server):
    loader = MediaLoader(MediaOptions(allow_private_media_urls=True, max_image_bytes=1000))
    with pytest.raises(ValueError, match=r"larger than the limit .*--max-image-bytes"):
        loader.load_image(base(server) + "/big")  # refused on Content-Length
    start = time.monotonic()
    with pytest.raises(ValueError, match=r"larger than the limit .*--max-image-bytes"):
        loader.load_image(base(server) + "/stream")  # 12 MB offered, counting stops at the limit
    assert time.monotonic() - start < 2


@pytest.mark.parametrize("path", ["/slow", "/trickle"])
def test_download_timeout(server, path):
    loader = MediaLoader(MediaOptions(allow_private_media_urls=True, media_fetch_timeout=0.3))
    start = time.monotonic()
    with pytest.raises(ValueError, match=r"longer than 0.3 s.*--media-fetch-timeout"):
        loader.load_image(base(server) + path)
    assert time.monotonic() - start < 1.5


@pytest.fixture
def fake_dns(monkeypatch, server):
    """Names -> addresses for the fetcher; 'public.test' is a public address that really leads to
    the local test server, so redirects from a public host can be tested offline."""
    port = server.server_address[1]
    table = {"public.test": ["93.184.216.34"], "internal.test": ["10.0.0.1"],
             "mixed.test": ["93.184.216.34", "10.0.0.1"], "v6.test": ["::1"],
             "mapped.test": ["::ffff:10.0.0.1"], "meta.test": ["169.254.169.254"],
             "local.test": ["127.0.0.1"]}
    calls = []

    def resolve(host, port_):
        calls.append(host)
        if host[0].isdigit() or ":" in host:  # an address literal resolves to itself
            table[host] = [host]
        if host not in table:
            raise socket.gaierror(f"unknown test host {host}")
        return [(socket.AF_INET6 if ":" in a else socket.AF_INET, (a, port_)) for a in table[host]]

    real_open = url_fetch.open_socket

    def open_socket(family, sockaddr, timeout):
        if sockaddr[0] in ("93.184.216.34", "127.0.0.1"):
            return real_open(socket.AF_INET, ("127.0.0.1", port), timeout)
        raise AssertionError(f"the fetcher connected to {sockaddr}")

    monkeypatch.setattr(url_fetch, "resolve_host", resolve)
    monkeypatch.setattr(url_fetch, "open_socket", open_socket)
    return calls


@pytest.mark.parametrize("host,reason", [("internal.test", "private address 10.0.0.1"),
                                         ("mixed.test", "private address 10.0.0.1"),
                                         ("v6.test", "loopback address ::1"),
                                         ("mapped.test", "private"),
                                         ("meta.test", "link-local address 169.254.169.254")])
def test_names_resolving_to_private_addresses_are_refused(fake_dns, server, host, reason):
    with pytest.raises(ValueError, match=reason):
        MediaLoader().load_image(f"http://{host}:{server.server_address[1]}/img.png")
    assert server.seen_hosts == []


def test_connection_goes_to_the_checked_address(fake_dns, server):
    port = server.server_address[1]
    assert_sample(MediaLoader().load_image(f"http://public.test:{port}/img.png"))
    assert fake_dns == ["public.test"]  # resolved once; the socket went to that answer
    assert server.seen_hosts == [f"public.test:{port}"]  # while the Host header keeps the name


def test_redirects_to_private_addresses_are_refused(fake_dns, server):
    port = server.server_address[1]
    loader = MediaLoader()
    assert_sample(loader.load_image(f"http://public.test:{port}/to?loc=http://public.test:{port}/img.png"))
    for target in (f"http://127.0.0.1:{port}/img.png", f"http://local.test:{port}/img.png",
                   f"http://internal.test:{port}/img.png"):
        with pytest.raises(ValueError, match="the server does not fetch from private networks"):
            loader.load_image(f"http://public.test:{port}/to?loc={target}")
    with pytest.raises(ValueError, match="could not resolve"):
        loader.load_image(f"http://nowhere.test:{port}/img.png")


@pytest.mark.parametrize("address,reason", [
    ("8.8.8.8", None), ("2606:4700::1111", None), ("127.0.0.2", "loopback"), ("0.0.0.0", "unspecified"),
    ("192.168.1.1", "private"), ("172.16.0.1", "private"), ("fd00::1", "private"), ("fe80::1", "link-local"),
    ("224.0.0.1", "multicast"), ("ff02::1", "multicast"), ("240.0.0.1", "reserved"), ("::", "unspecified"),
    ("100.64.0.1", "non-global"), ("::ffff:127.0.0.1", "loopback"), ("2002:0a00:0001::", "private"),
    ("64:ff9b::a9fe:a9fe", "link-local"), ("64:ff9b::808:808", None)])
def test_address_classification(address, reason):
    got = url_fetch.forbidden_reason(ip_address(address))
    assert (got is None) if reason is None else got.startswith(reason)


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    """An HTTPS server on loopback with a self-signed certificate for 'public.test'."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a test certificate")
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem"), "-days", "1",
                    "-subj", "/CN=public.test", "-addext", "subjectAltName=DNS:public.test"],
                   check=True, capture_output=True)
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.daemon_threads, srv.seen_hosts, srv.stop = True, [], threading.Event()
    srv.handle_error = lambda *a: None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(d / "cert.pem", d / "key.pem")
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv, str(d / "cert.pem")
    srv.stop.set()
    srv.shutdown()
    srv.server_close()


def test_https_verifies_the_url_host_while_connecting_to_the_checked_address(monkeypatch, tls_server):
    srv, cert = tls_server
    port = srv.server_address[1]
    monkeypatch.setattr(url_fetch, "resolve_host", lambda host, p: [(socket.AF_INET, ("93.184.216.34", p))])
    monkeypatch.setattr(url_fetch, "open_socket",
                        lambda family, addr, timeout: socket.create_connection(("127.0.0.1", port), timeout))
    with pytest.raises(ValueError, match="certificate verify failed"):  # self-signed: not trusted by default
        MediaLoader().load_image(f"https://public.test:{port}/img.png")
    make_context = ssl.create_default_context
    monkeypatch.setattr(ssl, "create_default_context", lambda: make_context(cafile=cert))
    assert_sample(MediaLoader().load_image(f"https://public.test:{port}/img.png"))
    with pytest.raises(ValueError, match="certificate verify failed"):  # the name must match the URL's host
        MediaLoader().load_image(f"https://other.test:{port}/img.png")


# ------------------------------------------------------------------------- video
def test_video_as_a_list_of_frames():
    loader = MediaLoader(MediaOptions(max_video_frames=3))
    frames = loader.load_video([sample_image(), PNG, data_url(PNG)])
    assert len(frames) == 3
    for frame in frames:
        assert_sample(frame)
    with pytest.raises(ValueError, match="over the limit of 3; send fewer frames or raise --max-video-frames"):
        loader.load_video([PNG] * 4)
    with pytest.raises(ValueError, match="no frames"):
        loader.load_video([])
    with pytest.raises(ValueError, match="could not decode the image"):
        loader.load_video([PNG, b"garbage bytes here"])


def make_video(n_frames: int, size=(32, 24)) -> bytes:
    """A lossless (FFV1 in Matroska) video whose frame i is uniformly grey level 10*i."""
    av = pytest.importorskip("av")
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="matroska") as container:
        stream = container.add_stream("ffv1", rate=10)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv444p"
        for i in range(n_frames):
            frame = av.VideoFrame.from_image(Image.new("RGB", size, (10 * i,) * 3))
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return buf.getvalue()


def grey_levels(frames) -> list:
    return [round(f.getpixel((5, 5))[0] / 10) for f in frames]


def test_video_file_sampled_evenly(tmp_path):
    video = make_video(10)
    (tmp_path / "clip.bin").write_bytes(video)  # no video extension: content decides
    loader = MediaLoader(MediaOptions(max_video_frames=4, allow_local_media_path=str(tmp_path)))
    for source in (video, base64.b64encode(video).decode(), data_url(video, "video/x-matroska"),
                   {"type": "video_url", "video_url": {"url": data_url(video)}}, "clip.bin"):
        frames = loader.load_video(source)
        assert [f.mode for f in frames] == ["RGB"] * 4 and frames[0].size == (32, 24)
        assert grey_levels(frames) == [0, 3, 6, 9]
    assert grey_levels(MediaLoader().load_video(video)) == list(range(10))  # fewer than the limit: all


def test_video_refusals():
    video = make_video(3)
    with pytest.raises(ValueError, match=r"over the limit .*--max-video-bytes"):
        MediaLoader(MediaOptions(max_video_bytes=len(video) - 1)).load_video(video)
    with pytest.raises(ValueError, match="a video frame is 32x24.*--max-image-pixels"):
        MediaLoader(MediaOptions(max_image_pixels=100)).load_video(video)
    with pytest.raises(ValueError, match="could not decode the video"):
        MediaLoader().load_video(b"\x1aE\xdf\xa3 definitely not a real matroska file" * 4)


def test_video_without_pyav(monkeypatch):
    monkeypatch.setitem(sys.modules, "av", None)  # import av now raises ImportError
    with pytest.raises(ValueError, match=r"decoding video files needs PyAV \(pip install av\); or send the frames as a list of images"):
        MediaLoader().load_video(b"\x00\x00\x00\x18ftypisom")
    assert len(MediaLoader().load_video([PNG])) == 1  # frame lists need no PyAV


# ------------------------------------------------------------------------- options
def test_options_from_server_args_and_validation(tmp_path):
    from sglang.runtime.server_args import ServerArgs

    args = ServerArgs(model_path="m", device="cpu", allow_local_media_path=str(tmp_path),
                      allow_private_media_urls=True, max_image_pixels=123, media_fetch_timeout=2.5)
    opts = MediaOptions.from_server_args(args)
    assert opts == MediaOptions(allow_local_media_path=str(tmp_path), allow_private_media_urls=True,
                                max_image_pixels=123, media_fetch_timeout=2.5)
    assert MediaOptions.from_server_args(ServerArgs(model_path="m", device="cpu")) == MediaOptions()
    with pytest.raises(ValueError, match="not a directory"):
        MediaOptions(allow_local_media_path=str(tmp_path / "nope"))
    with pytest.raises(ValueError, match="--max-video-frames must be positive"):
        MediaOptions(max_video_frames=0)
    with pytest.raises(ValueError, match="--media-fetch-timeout must be positive"):
        MediaOptions(media_fetch_timeout=0)
    assert issubclass(MediaError, ValueError)
