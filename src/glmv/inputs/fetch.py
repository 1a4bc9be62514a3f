"""Fetching user-supplied http(s) URLs without letting users reach the server's own network.

- The host is resolved once; every address must be public (unless private URLs are allowed),
  and the connection goes to the checked address, so a second DNS answer cannot swap in a
  private one (DNS rebinding). TLS still verifies the certificate against the host name.
- Redirects are followed by hand, at most MAX_REDIRECTS, each target checked again.
- The body is read in chunks up to the byte limit, under one deadline for the whole fetch;
  compressed transfer encodings are not requested, so the limit counts real bytes.
"""
from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import time
import urllib.parse

MAX_REDIRECTS = 5
CHUNK = 1 << 16


class FetchError(ValueError):
    """A URL that may not or cannot be fetched: the message says why."""


def resolve_public(host: str, port: int, allow_private: bool) -> str:
    """The address to connect to. Refuses hosts with any non-public address: loopback, private,
    link-local (cloud metadata at 169.254.169.254), multicast, reserved or unspecified."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise FetchError(f"cannot resolve {host}: {exc}") from exc
    addresses = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]
    if not allow_private:
        for ip in addresses:
            if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
                ip = ip.ipv4_mapped
            if not ip.is_global or ip.is_multicast:
                raise FetchError(f"refusing to fetch from {host} ({ip}): not a public address")
    return str(addresses[0])


class _PinnedHTTP(http.client.HTTPConnection):
    def __init__(self, host: str, port: int, address: str, timeout: float):
        super().__init__(host, port, timeout=timeout)
        self.address = address

    def connect(self):
        self.sock = socket.create_connection((self.address, self.port), self.timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, address: str, timeout: float):
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self.address = address

    def connect(self):
        sock = socket.create_connection((self.address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def fetch_url(url: str, max_bytes: int, timeout_s: float, allow_private: bool = False,
              resolve=resolve_public) -> bytes:
    """The body of a GET, following redirects. `resolve(host, port, allow_private)` picks the address."""
    deadline = time.monotonic() + timeout_s
    for _ in range(MAX_REDIRECTS + 1):
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise FetchError(f"only http(s) URLs can be fetched, not {parts.scheme or 'a bare path'}: {url[:200]}")
        if not parts.hostname:
            raise FetchError(f"URL has no host: {url[:200]}")
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError as exc:
            raise FetchError(f"bad port in {url[:200]}") from exc
        address = resolve(parts.hostname, port, allow_private)
        kind = _PinnedHTTPS if parts.scheme == "https" else _PinnedHTTP
        conn = kind(parts.hostname, port, address, timeout=max(0.1, deadline - time.monotonic()))
        try:
            target = urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, ""))
            conn.request("GET", target, headers={"User-Agent": "glmv", "Accept-Encoding": "identity"})
            response = conn.getresponse()
            if response.status in (301, 302, 303, 307, 308):
                location = response.getheader("Location")
                if not location:
                    raise FetchError(f"{url[:200]} redirects without a Location")
                url = urllib.parse.urljoin(url, location)
                continue
            if response.status != 200:
                raise FetchError(f"{url[:200]} answered HTTP {response.status}")
            declared = response.getheader("Content-Length")
            if declared and declared.isdigit() and int(declared) > max_bytes:
                raise FetchError(f"{url[:200]} is {declared} bytes, over the {max_bytes}-byte limit")
            return _read_bounded(response, max_bytes, deadline, url)
        except (OSError, http.client.HTTPException) as exc:
            raise FetchError(f"cannot fetch {url[:200]}: {exc}") from exc
        finally:
            conn.close()
    raise FetchError(f"more than {MAX_REDIRECTS} redirects from {url[:200]}")


def _read_bounded(response: http.client.HTTPResponse, max_bytes: int, deadline: float, url: str) -> bytes:
    body = bytearray()
    while chunk := response.read(CHUNK):
        body += chunk
        if len(body) > max_bytes:
            raise FetchError(f"{url[:200]} is over the {max_bytes}-byte limit")
        if time.monotonic() > deadline:
            raise FetchError(f"fetching {url[:200]} took too long")
    return bytes(body)
