"""Fetching user URLs: public addresses only, pinned connections, checked redirects, bounded bodies."""
import http.server
import threading

import pytest

from glmv.inputs.fetch import FetchError, fetch_url, resolve_public


@pytest.fixture(scope="module")
def web():
    """A loopback web server: /data (bytes), /big, /redirect/N (a chain), /to?url=... (a redirect)."""
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            path = self.path
            if path == "/data":
                self._send(200, b"x" * 1000)
            elif path == "/big":
                self._send(200, b"y" * 100_000, length=False)
            elif path.startswith("/redirect/"):
                n = int(path.rsplit("/", 1)[1])
                self._redirect("/data" if n == 0 else f"/redirect/{n - 1}")
            elif path.startswith("/to?url="):
                self._redirect(path[len("/to?url="):])
            else:
                self._send(404, b"")

        def _send(self, status, body, length=True):
            self.send_response(status)
            if length:
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _redirect(self, location):
            self.send_response(302)
            self.send_header("Location", location)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "10.1.2.3", "192.168.0.1", "169.254.169.254", "::1",
                                  "::ffff:127.0.0.1", "224.0.0.1", "0.0.0.0", "fd00::1"])
def test_private_addresses_are_refused(host):
    with pytest.raises(FetchError, match="not a public address"):
        resolve_public(host, 80, allow_private=False)
    assert resolve_public(host, 80, allow_private=True)


def test_private_urls_are_refused_before_connecting(web):
    with pytest.raises(FetchError, match="not a public address"):
        fetch_url(f"http://127.0.0.1:{web}/data", 10_000, 5)
    assert fetch_url(f"http://127.0.0.1:{web}/data", 10_000, 5, allow_private=True) == b"x" * 1000


def only(hosts: dict):
    """A resolver that knows only `hosts` (name -> address): stands in for public DNS names."""
    def resolve(host, port, allow_private):
        if host not in hosts:
            raise FetchError(f"refusing to fetch from {host}: not a public address")
        return hosts[host]
    return resolve


def test_connection_goes_to_the_checked_address(web):
    # "public.test" exists in no DNS: the fetch works only because it connects to the address the check returned
    assert fetch_url(f"http://public.test:{web}/data", 10_000, 5, resolve=only({"public.test": "127.0.0.1"})) \
        == b"x" * 1000


def test_every_redirect_is_checked_again(web):
    resolve = only({"public.test": "127.0.0.1"})
    with pytest.raises(FetchError, match="private.test"):
        fetch_url(f"http://public.test:{web}/to?url=http://private.test:{web}/data", 10_000, 5, resolve=resolve)
    assert fetch_url(f"http://public.test:{web}/redirect/4", 10_000, 5, resolve=resolve) == b"x" * 1000  # 5 redirects
    with pytest.raises(FetchError, match="more than 5 redirects"):
        fetch_url(f"http://public.test:{web}/redirect/5", 10_000, 5, resolve=resolve)
    with pytest.raises(FetchError, match="only http"):
        fetch_url(f"http://public.test:{web}/to?url=file:///etc/passwd", 10_000, 5, resolve=resolve)


def test_size_is_capped_while_downloading(web):
    with pytest.raises(FetchError, match="over the 50000-byte limit"):
        fetch_url(f"http://127.0.0.1:{web}/big", 50_000, 5, allow_private=True)
    with pytest.raises(FetchError, match="over the 500-byte limit"):
        fetch_url(f"http://127.0.0.1:{web}/data", 500, 5, allow_private=True)  # by Content-Length
    with pytest.raises(FetchError, match="HTTP 404"):
        fetch_url(f"http://127.0.0.1:{web}/missing", 500, 5, allow_private=True)
