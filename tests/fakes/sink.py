"""A loopback-only service that must never be reached: it counts every connection and every byte
it receives (and answers anything with 200, so a client that does reach it would succeed).

    with Sink() as sink:
        fake.redirect_to = sink.url + "/latest/meta-data/"   # like a cloud metadata service
        ...
        assert sink.connections == 0 and sink.received == b""
"""

from __future__ import annotations

import socket
import threading


class Sink:
    def __init__(self, host: str = "127.0.0.1"):
        self.host = host
        self.connections = 0
        self.received = b""
        self._srv: socket.socket | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def __enter__(self) -> Sink:
        self._srv = socket.socket()
        self._srv.bind((self.host, 0))
        self._srv.listen(16)
        self.port = self._srv.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True, name="sink").start()
        return self

    def __exit__(self, *exc) -> None:
        self._srv.close()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._srv.accept()
            except OSError:
                return
            self.connections += 1
            with conn:
                conn.settimeout(2)
                try:
                    self.received += conn.recv(65536)
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                 b"Content-Length: 2\r\nConnection: close\r\n\r\n{}")
                except OSError:
                    pass
