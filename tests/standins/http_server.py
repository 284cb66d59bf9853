"""The lifecycle the HTTP stand-ins share: a ThreadingHTTPServer on 127.0.0.1, port 0, served from a daemon thread,
used as a context manager. Each stand-in's handler class reaches its stand-in through the `standin` attribute."""
from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar


class ThreadedHttpStandIn:
    handler_class: ClassVar[type[BaseHTTPRequestHandler]]   # set by each stand-in
    thread_name: ClassVar[str] = "http-standin"

    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    def __enter__(self):
        handler = type("Handler", (self.handler_class,), {"standin": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=self.thread_name, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.before_shutdown()
        assert self._server is not None and self._thread is not None
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def before_shutdown(self) -> None:
        """Release anything that would keep a handler thread from finishing (stalled replies)."""

    @property
    def port(self) -> int:
        assert self._server is not None, "use the stand-in as a context manager"
        return self._server.server_address[1]
