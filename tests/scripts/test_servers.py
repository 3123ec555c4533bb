"""scripts/servers.py: the wait for a started server that the demo and the load bench share."""
from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from scripts.servers import wait_until_up


class _Ok(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def test_up_once_the_url_answers():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        assert wait_until_up(f"http://127.0.0.1:{server.server_port}/healthz", timeout=5)
    finally:
        server.shutdown()
        server.server_close()


def test_not_up_after_the_timeout():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    started = time.monotonic()
    assert not wait_until_up(f"http://127.0.0.1:{port}/", timeout=0.5, poll_s=0.1)
    assert time.monotonic() - started < 5
