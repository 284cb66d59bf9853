"""Finnhub's official Python client (`finnhub-python`) as the REST sources call it: quotes (finnhub_rest.py) and
daily candles for the backfill (bars.py). The WebSocket trades have no API in it and stay on `websockets`.

Three changes to its defaults, each for a reason:
- the API key travels in the X-Finnhub-Token header, not in the `token` query parameter the client puts in every
  URL (where proxies, server logs and exception messages keep it);
- redirects are refused (max_redirects 0): a redirect raises before it is followed, so the key goes nowhere else,
  and fetch() returns the 3xx status for the caller's one-line error;
- the response comes back whole (status, headers, body): the callers judge 401/403/429, Retry-After, 5xx and the
  body themselves, which the client's own handling (one exception for every non-2xx, the body parsed or refused by
  its Content-Type) would hide. Bodies are streamed and read up to a limit, never whole.
The base URL is finnhub.rest_url (the stand-in server in tests).
"""
from __future__ import annotations

from typing import Callable, Mapping

import finnhub
import requests

TOKEN_HEADER = "X-Finnhub-Token"  # noqa: S105 - the header's name; the key comes from FINNHUB_API_KEY
CHUNK_BYTES = 8192


class FinnhubClient(finnhub.Client):
    """finnhub.Client with the key in a header, no redirects and raw responses (see the module's docstring)."""

    def __init__(self, api_key: str, rest_url: str, timeout: float):
        super().__init__(api_key=api_key)
        session = self._session
        session.params.pop("token", None)
        session.headers[TOKEN_HEADER] = api_key
        session.max_redirects = 0
        session.stream = True
        self.API_URL = rest_url.rstrip("/")
        self.DEFAULT_TIMEOUT = timeout

    @staticmethod
    def _handle_response(response: requests.Response) -> requests.Response:
        return response


def fetch(call: Callable[[], requests.Response], max_bytes: int) -> tuple[int, Mapping[str, str], bytes]:
    """(status, headers, body) of one client call, e.g. `fetch(lambda: client.quote("AAPL"), limit)`. The body is
    read up to max_bytes + 1 (callers refuse more); a refused redirect is its 3xx response. Network errors and
    timeouts raise requests' exceptions, which are OSErrors."""
    try:
        response = call()
    except requests.TooManyRedirects as exc:
        response = exc.response
    with response:
        body = bytearray()
        for chunk in response.iter_content(chunk_size=CHUNK_BYTES):
            body += chunk
            if len(body) > max_bytes:
                break
        return response.status_code, response.headers, bytes(body[:max_bytes + 1])
