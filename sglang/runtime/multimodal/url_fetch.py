"""Download a request's http(s) media URL without letting the request reach the server's own network.

A URL in a request is chosen by the client but fetched by the server, so it could point at
services only the server can see (cloud metadata at 169.254.169.254, an admin port on loopback, a
database on 10.x). Every hop is therefore resolved once, every resolved address is checked, and
the connection goes to a checked address (the Host header and TLS name stay the URL's), so a DNS
answer that changes between check and connect (rebinding) cannot slip through. Redirects are
followed by hand and each target is checked the same way. The whole download has one deadline,
enforced by a timer that shuts the socket, since a server trickling one byte at a time would
otherwise reset a per-read timeout forever. Environment proxies are ignored on purpose: a proxy
would do the resolving and defeat the check.

`resolve_host` and `open_socket` are the two network touch points; tests replace them.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from typing import List, Optional, Tuple, Union
from urllib.parse import unquote, urljoin, urlsplit

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
SockAddr = Tuple  # (host, port) or (host, port, flowinfo, scope_id), as getaddrinfo gives it

MAX_REDIRECTS = 3
_REDIRECT_CODES = (301, 302, 303, 307, 308)
_CHUNK = 64 * 1024
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


@dataclass(frozen=True)
class FetchLimits:
    max_bytes: int
    timeout: float
    allow_private: bool
    bytes_flag: str  # the server flag that raises max_bytes, named in the error


def resolve_host(host: str, port: int) -> List[Tuple[int, SockAddr]]:
    """(family, sockaddr) for every address `host` resolves to."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [(family, sockaddr) for family, _, _, _, sockaddr in infos]


def open_socket(family: int, sockaddr: SockAddr, timeout: float) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(sockaddr)
    except BaseException:
        sock.close()
        raise
    return sock


def forbidden_reason(ip: IPAddress) -> Optional[str]:
    """Why the server must not connect to `ip` on a client's behalf, or None for a public address.
    IPv6 forms that carry an IPv4 address (mapped, 6to4, Teredo, NAT64) are judged by that address."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            reason = forbidden_reason(embedded)
            return f"{reason} (inside {ip})" if reason else None
    for kind in ("unspecified", "loopback", "link_local", "multicast", "reserved", "private"):
        if getattr(ip, f"is_{kind}"):
            return kind.replace("_", "-")
    if not ip.is_global:
        return "non-global"  # e.g. 100.64.0.0/10, carrier-grade NAT space
    return None


def fetch_url(url: str, limits: FetchLimits) -> bytes:
    """The body of `url` (http or https), following at most MAX_REDIRECTS redirects."""
    deadline = time.monotonic() + limits.timeout
    for _ in range(MAX_REDIRECTS + 1):
        status, location, body = _fetch_once(url, limits, deadline)
        if status not in _REDIRECT_CODES:
            return body
        if not location:
            raise ValueError(f"media URL {_short(url)} answered a redirect (HTTP {status}) without a Location")
        url = urljoin(url, location)
    raise ValueError(f"media URL was redirected more than {MAX_REDIRECTS} times (last to {_short(url)}); "
                     f"send the final URL")


def _fetch_once(url: str, limits: FetchLimits, deadline: float) -> Tuple[int, Optional[str], bytes]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise ValueError(f"media URL scheme {scheme + ':' if scheme else '(none)'} is not supported "
                         f"(in {_short(url)}); use http(s), a data: URL or base64")
    host = parts.hostname
    if not host:
        raise ValueError(f"media URL {_short(url)} has no host")
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError as exc:
        raise ValueError(f"media URL {_short(url)} has a bad port: {exc}") from None
    addresses = _checked_addresses(host, port, limits.allow_private)
    conn = _PinnedHTTPSConnection(host, port, addresses) if scheme == "https" else _PinnedHTTPConnection(host, port, addresses)
    conn.timeout = _remaining(deadline, limits)
    # The timer closes the socket at the deadline whatever the read is waiting on.
    timer = threading.Timer(_remaining(deadline, limits), conn.abort)
    timer.daemon = True
    timer.start()
    try:
        return _exchange(conn, parts, url, limits, deadline)
    except (OSError, http.client.HTTPException) as exc:
        if time.monotonic() >= deadline:
            raise _timeout_error(limits) from None
        raise ValueError(f"could not download media URL {_short(url)}: {exc}") from None
    finally:
        timer.cancel()
        conn.close()


def _exchange(conn: http.client.HTTPConnection, parts, url: str, limits: FetchLimits,
              deadline: float) -> Tuple[int, Optional[str], bytes]:
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    conn.request("GET", target, headers={"User-Agent": "sglang-media-loader", "Accept": "*/*"})
    resp = conn.getresponse()
    if resp.status in _REDIRECT_CODES:
        return resp.status, resp.getheader("Location"), b""
    if not 200 <= resp.status < 300:
        raise ValueError(f"media URL {_short(url)} answered HTTP {resp.status} {resp.reason}; check the URL")
    declared = resp.getheader("Content-Length")
    if declared and declared.isdigit() and int(declared) > limits.max_bytes:
        raise _too_large(url, f"{int(declared):,} bytes", limits)
    chunks, total = [], 0
    while True:
        chunk = resp.read1(_CHUNK)
        if not chunk:
            break
        total += len(chunk)
        if total > limits.max_bytes:
            raise _too_large(url, "more", limits)
        chunks.append(chunk)
    if time.monotonic() >= deadline:  # the timer shut the socket: the body is cut short
        raise _timeout_error(limits)
    if declared and declared.isdigit() and total < int(declared):
        raise ValueError(f"the download of media URL {_short(url)} ended early ({total:,} of {int(declared):,} bytes)")
    return resp.status, None, b"".join(chunks)


def _checked_addresses(host: str, port: int, allow_private: bool) -> List[Tuple[int, SockAddr]]:
    try:
        addresses = resolve_host(host, port)
    except (OSError, UnicodeError) as exc:
        raise ValueError(f"could not resolve media URL host {host!r}: {exc}") from None
    if not addresses:
        raise ValueError(f"media URL host {host!r} resolves to no address")
    if allow_private:
        return addresses
    for _, sockaddr in addresses:
        ip = ipaddress.ip_address(str(sockaddr[0]).split("%")[0])
        reason = forbidden_reason(ip)
        if reason:
            raise ValueError(f"media URL host {host!r} resolves to {reason} address {ip}; the server does not "
                             f"fetch from private networks (start it with --allow-private-media-urls to allow it)")
    return addresses


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Connects to the already-checked addresses instead of resolving the host again."""

    def __init__(self, host: str, port: int, addresses: List[Tuple[int, SockAddr]]):
        super().__init__(host, port)
        self._addresses = addresses
        self._aborted = threading.Event()

    def connect(self) -> None:
        self.sock = self._connect_any()

    def _connect_any(self) -> socket.socket:
        error: Optional[OSError] = None
        for family, sockaddr in self._addresses:
            if self._aborted.is_set():
                break
            try:
                return open_socket(family, sockaddr, self.timeout)
            except OSError as exc:
                error = exc
        raise error or TimeoutError("timed out")

    def abort(self) -> None:
        self._aborted.set()
        sock = self.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed or never connected: nothing left to interrupt


class _PinnedHTTPSConnection(_PinnedHTTPConnection):
    default_port = 443

    def connect(self) -> None:
        # Certificate and SNI use the URL's host name, not the address we connect to.
        raw = self._connect_any()
        self.sock = ssl.create_default_context().wrap_socket(raw, server_hostname=self.host)


def _remaining(deadline: float, limits: FetchLimits) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise _timeout_error(limits)
    return left


def _timeout_error(limits: FetchLimits) -> ValueError:
    return ValueError(f"downloading the media URL took longer than {limits.timeout:g} s; send the data inline "
                      f"(base64) or raise --media-fetch-timeout")


def _too_large(url: str, size: str, limits: FetchLimits) -> ValueError:
    return ValueError(f"media URL {_short(url)} is larger than the limit ({size} > {limits.max_bytes:,} bytes); "
                      f"send a smaller file or raise {limits.bytes_flag}")


def _short(url: str, keep: int = 120) -> str:
    url = unquote(url)
    return url if len(url) <= keep else url[:keep] + "..."
