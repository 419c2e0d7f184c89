"""tests.prefect_rest retries what Prefect's client retries, against a real HTTP server on loopback."""

from __future__ import annotations

import json
import threading
import urllib.error
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.prefect_rest import prefect_api


def _server(codes: list[int]):
    """A loopback server that answers each request with the next code of ``codes`` (then 200 with a body)."""
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def _answer(self):
            seen.append(self.command)
            code = codes.pop(0) if codes else 200
            body = json.dumps({"code": code}).encode()
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_DELETE = do_POST = _answer

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, seen


def test_a_busy_database_503_is_retried_until_the_server_answers():
    server, seen = _server([503, 503])
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/api/deployments/x"
        assert prefect_api(url, method="DELETE", backoff=0.01) == {"code": 200}
        assert seen == ["DELETE"] * 3
    finally:
        server.shutdown()


@pytest.mark.parametrize("codes,expected", [([404], 404), ([503] * 4, 503)])
def test_other_errors_and_exhausted_retries_are_raised(codes, expected):
    server, seen = _server(codes)
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/api/work_pools/x"
        with pytest.raises(urllib.error.HTTPError) as err:
            prefect_api(url, retries=3, backoff=0.01)
        assert err.value.code == expected and len(seen) == (1 if expected == 404 else 4)
    finally:
        server.shutdown()
