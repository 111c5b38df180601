"""An HTTP proxy that misbehaves on purpose, for testing remote (e.g. DICOMweb) readers.

:class:`FaultProxy` listens on 127.0.0.1 and forwards ``GET`` requests to an
upstream server (e.g. Orthanc's DICOMweb root). For requests whose path
contains :attr:`FaultProxy.match` it can, instead of passing the answer on:

``"500"`` / ``"503"``
    answer with that status;
``"drop"``
    close the connection without answering;
``"stall"``
    wait ``stall_seconds`` first;
``"truncate"``
    declare the upstream body's length but send only half of it, then close;
``"cut-multipart"``
    send a well-formed HTTP answer whose multipart body stops half-way
    (no closing boundary);
``"fewer-parts"``
    drop the last part of a multipart body (the message stays well formed).

``count`` limits the fault to the next n matching requests. Every request is
logged (path, Accept header, fault, body bytes passed on) for assertions and
byte counts.

Example
-------
>>> with FaultProxy("http://127.0.0.1:8042/dicom-web") as proxy:   # doctest: +SKIP
...     proxy.set_fault("503", match="/frames/", count=2)
...     dcmxr.dicomweb.open_series(proxy.url, study, series).values
"""

from __future__ import annotations

import socket
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["FaultProxy", "FAULTS"]

FAULTS = ("500", "503", "drop", "stall", "truncate", "cut-multipart", "fewer-parts")
_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding"}


class _Handler(BaseHTTPRequestHandler):
    server: "_Server"
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - quiet
        pass

    def _take_fault(self) -> str | None:
        srv = self.server
        with srv.lock:
            if srv.fault is None or srv.match not in self.path:
                return None
            if srv.count is not None:
                if srv.count <= 0:
                    return None
                srv.count -= 1
            srv.faults_served += 1
            return srv.fault

    def _send(self, status: int, headers: dict[str, str], body: bytes, declared: int | None = None,
              entry: list | None = None) -> None:
        if entry is not None:
            entry[3] = len(body)
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body) if declared is None else declared))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def do_GET(self) -> None:  # noqa: N802
        import requests

        srv = self.server
        fault = self._take_fault()
        entry = [self.path, self.headers.get("Accept"), fault, 0]
        srv.log.append(entry)
        if fault in ("500", "503"):
            return self._send(int(fault), {"Content-Type": "text/plain"}, b"injected failure")
        if fault == "drop":
            self.close_connection = True
            self.request.shutdown(socket.SHUT_RDWR)
            return
        if fault == "stall":
            time.sleep(srv.stall_seconds)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
        up = requests.get(srv.upstream_root + self.path, headers=headers, timeout=60)
        body = up.content
        out_headers = {k: v for k, v in up.headers.items() if k.lower() not in _HOP}
        if fault == "truncate":
            self._send(up.status_code, out_headers, body[: len(body) // 2], declared=len(body), entry=entry)
            self.close_connection = True
            self.request.shutdown(socket.SHUT_RDWR)
            return
        if fault in ("cut-multipart", "fewer-parts") and "boundary=" in up.headers.get("Content-Type", ""):
            boundary = up.headers["Content-Type"].split("boundary=", 1)[1].split(";")[0].strip('"').encode()
            marker = b"--" + boundary
            if fault == "cut-multipart":
                body = body[: len(body) // 2]
            else:
                last = body.rfind(b"\r\n" + marker, 0, body.rfind(marker + b"--") - 2)
                body = body[:last] + b"\r\n" + marker + b"--\r\n" if last > 0 else body
        self._send(up.status_code, out_headers, body, entry=entry)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        import sys

        if isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            return
        super().handle_error(request, client_address)


class FaultProxy:
    """Forward GETs to ``upstream`` (a URL; its path prefix is kept), misbehaving on demand.

    Parameters
    ----------
    upstream : str
        ``http://host:port/prefix`` of the real server.

    Attributes
    ----------
    url : str
        The proxy's URL with the same path prefix (use it instead of ``upstream``).
    """

    def __init__(self, upstream: str):
        parts = urllib.parse.urlsplit(upstream)
        self._prefix = parts.path.rstrip("/")
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.upstream_root = f"{parts.scheme}://{parts.netloc}"
        self._server.lock = threading.Lock()
        self._server.log = []
        self.set_fault(None)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}{self._prefix}"

    def set_fault(self, fault: str | None, *, match: str = "", count: int | None = None,
                  stall_seconds: float = 30.0) -> None:
        """Misbehave for requests whose path contains ``match`` (see the module docstring)."""
        if fault is not None and fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; one of {FAULTS}")
        srv = self._server
        with srv.lock:
            srv.fault, srv.match, srv.count, srv.stall_seconds = fault, match, count, stall_seconds
            srv.faults_served = 0

    @property
    def faults_served(self) -> int:
        return self._server.faults_served

    def requests(self, contains: str = "") -> list[tuple[str, str | None, str | None, int]]:
        """Logged ``(path, Accept, fault, body bytes sent)`` of requests whose path contains ``contains``."""
        with self._server.lock:
            return [tuple(r) for r in self._server.log if contains in r[0]]

    def bytes_sent(self, contains: str = "") -> int:
        """Body bytes passed on (optionally only for paths containing ``contains``)."""
        return sum(r[3] for r in self.requests(contains))

    def reset(self) -> None:
        """Forget the request log."""
        with self._server.lock:
            self._server.log.clear()

    def start(self) -> "FaultProxy":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> "FaultProxy":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
