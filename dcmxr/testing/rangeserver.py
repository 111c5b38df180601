"""A small threaded HTTP server with byte-range support, for tests and benchmarks.

Python's ``http.server`` ignores ``Range`` headers (it always sends the whole
file), so it cannot show what a ranged reader moves. :class:`RangeServer`
serves a folder on 127.0.0.1 with single-range ``GET`` (206 Partial Content),
``HEAD``, HTML folder listings (what fsspec's HTTP filesystem parses), an
optional required header (to test ``storage_options`` plumbing) and a log of
every request with the bytes sent, so tests can count requests and bytes.

It can also misbehave on purpose (:attr:`RangeServer.fault`), to test that
remote reads fail clearly instead of hanging or returning wrong bytes:

``"500"`` / ``"503"``
    answer with that status;
``"drop"``
    close the connection without answering;
``"truncate"``
    declare the full Content-Length but send half the body, then close;
``"ignore-range"``
    answer ranged GETs with 200 and the whole file (as servers without range
    support do);
``"stall"``
    wait :attr:`RangeServer.stall_seconds` before answering.

Faults apply to GETs (ranged ones only unless ``fault_ranged_only`` is False)
whose path contains ``fault_path``, for the next ``fault_count`` such requests
(``None``: all of them).

Example
-------
>>> with RangeServer(folder) as srv:                      # doctest: +SKIP
...     dcmxr.scan(srv.url + "/series/")
...     srv.bytes_sent(), len(srv.requests())
"""

from __future__ import annotations

import html
import os
import re
import socket
import threading
import urllib.parse
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

__all__ = ["RangeServer", "Request"]

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


@dataclass(frozen=True)
class Request:
    """One logged request: method, path, requested range, status and body bytes sent."""

    method: str
    path: str
    range: tuple[int, int] | None
    status: int
    sent: int


class _Handler(BaseHTTPRequestHandler):
    server: "_Server"
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - quiet
        pass

    def setup(self) -> None:
        super().setup()
        # headers and body go out in separate writes: without TCP_NODELAY, Nagle + delayed ACK
        # add ~40 ms to every small response
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _target(self) -> Path | None:
        rel = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path).lstrip("/")
        full = (self.server.root / rel).resolve()
        root = self.server.root.resolve()
        if full != root and root not in full.parents:
            return None  # never serve outside the root
        return full

    def _reply(self, status: int, body: bytes, headers: dict[str, str], rng=None, head: bool = False) -> None:
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        # log before the body goes out: a client that got its bytes must find its request logged
        self.server.log(Request(self.command, self.path, rng, status, 0 if head else len(body)))
        if not head:
            self.wfile.write(body)

    def _authorised(self) -> bool:
        need = self.server.required_header
        return need is None or self.headers.get(need[0]) == need[1]

    def _fault(self, head: bool) -> bool:
        """Misbehave if the server is told to; True when the request was handled (badly)."""
        srv = self.server
        fault = srv.fault
        if fault is None or head or srv.fault_path not in self.path:
            return False
        if srv.fault_ranged_only and self.headers.get("Range") is None:
            return False
        with srv._lock:
            if srv.fault_count is not None:
                if srv.fault_count <= 0:
                    return False
                srv.fault_count -= 1
            srv.faults_served += 1
        if fault in ("500", "503"):
            self._reply(int(fault), b"server error", {"Content-Type": "text/plain"})
        elif fault == "drop":
            self.server.log(Request(self.command, self.path, None, 0, 0))
            self.close_connection = True
            self.request.shutdown(socket.SHUT_RDWR)
        elif fault == "stall":
            import time

            time.sleep(srv.stall_seconds)
            return False  # then answer normally (if the client is still there)
        elif fault == "truncate":
            path = self._target()
            body = path.read_bytes() if path is not None and path.is_file() else b"x" * 1000
            self.send_response(200 if self.headers.get("Range") is None else 206)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.server.log(Request(self.command, self.path, None, 206, len(body) // 2))
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.request.shutdown(socket.SHUT_RDWR)
        elif fault == "ignore-range":
            path = self._target()
            if path is None or not path.is_file():
                return False
            self._reply(200, path.read_bytes(), {"Content-Type": "application/dicom"})
        else:
            raise ValueError(f"unknown fault {fault!r}")
        return True

    def _serve(self, head: bool) -> None:
        if self._fault(head):
            return
        if not self._authorised():
            return self._reply(403, b"forbidden", {"Content-Type": "text/plain"}, head=head)
        path = self._target()
        if path is None or not path.exists():
            return self._reply(404, b"not found", {"Content-Type": "text/plain"}, head=head)
        if path.is_dir():
            links = "".join(
                f'<a href="{html.escape(urllib.parse.quote(p.name + ("/" if p.is_dir() else "")))}">'
                f"{html.escape(p.name)}</a>\n"
                for p in sorted(path.iterdir())
            )
            return self._reply(200, f"<html><body>\n{links}</body></html>".encode(),
                               {"Content-Type": "text/html"}, head=head)
        size = path.stat().st_size
        base = {"Accept-Ranges": "bytes", "Content-Type": "application/dicom"}
        header = self.headers.get("Range")
        if header is None:
            body = b"" if head else path.read_bytes()
            if head:
                self.send_response(200)
                for k, v in base.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(size))
                self.server.log(Request("HEAD", self.path, None, 200, 0))
                self.end_headers()
                return
            return self._reply(200, body, base)
        m = _RANGE.match(header.strip())
        if not m or (m.group(1) == "" and m.group(2) == ""):
            return self._reply(416, b"", {"Content-Range": f"bytes */{size}"}, head=head)
        if m.group(1) == "":  # suffix range: the last n bytes
            start, stop = max(0, size - int(m.group(2))), size - 1
        else:
            start = int(m.group(1))
            stop = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
        if start >= size or stop < start:
            return self._reply(416, b"", {"Content-Range": f"bytes */{size}"}, rng=(start, stop + 1), head=head)
        with open(path, "rb") as fh:
            fh.seek(start)
            body = fh.read(stop - start + 1)
        self._reply(206, body, {**base, "Content-Range": f"bytes {start}-{stop}/{size}"},
                    rng=(start, stop + 1), head=head)

    def do_GET(self) -> None:  # noqa: N802
        self._serve(head=False)

    def do_HEAD(self) -> None:  # noqa: N802
        self._serve(head=True)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        """Clients that hang up early (connection pools closing) are not errors worth printing."""
        import sys

        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionResetError, BrokenPipeError)):
            return
        super().handle_error(request, client_address)

    def __init__(self, root: Path, required_header: tuple[str, str] | None):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.root = Path(root)
        self.required_header = required_header
        self.fault: str | None = None
        self.fault_path = ""
        self.fault_count: int | None = None
        self.fault_ranged_only = True
        self.stall_seconds = 5.0
        self.faults_served = 0
        self._log: list[Request] = []
        self._lock = threading.Lock()

    def log(self, req: Request) -> None:
        with self._lock:
            self._log.append(req)


class RangeServer:
    """Serve a folder over HTTP on 127.0.0.1 (random free port) with Range support.

    Parameters
    ----------
    root : path
        Folder to serve (read-only; nothing outside it is served).
    required_header : (name, value), optional
        When given, requests without this exact header get 403.
    """

    def __init__(self, root: str | os.PathLike, required_header: tuple[str, str] | None = None):
        self._server = _Server(Path(root), required_header)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (no trailing slash)."""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "RangeServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> "RangeServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def requests(self, path_contains: str = "") -> list[Request]:
        """Logged requests (optionally only those whose path contains a string)."""
        with self._server._lock:
            return [r for r in self._server._log if path_contains in r.path]

    def bytes_sent(self, path_contains: str = "") -> int:
        """Body bytes sent (optionally only for matching paths)."""
        return sum(r.sent for r in self.requests(path_contains))

    def set_fault(self, fault: str | None, *, path: str = "", count: int | None = None, ranged_only: bool = True,
                  stall_seconds: float = 5.0) -> None:
        """Misbehave (see the module docstring); ``set_fault(None)`` restores normal service.

        Parameters
        ----------
        fault : {"500", "503", "drop", "truncate", "ignore-range", "stall"} or None
        path : str
            Only requests whose path contains this.
        count : int, optional
            Only the next ``count`` matching requests (default: all).
        ranged_only : bool
            Only GETs with a Range header.
        stall_seconds : float
            Delay of the ``"stall"`` fault.
        """
        if fault not in (None, "500", "503", "drop", "truncate", "ignore-range", "stall"):
            raise ValueError(f"unknown fault {fault!r}")
        with self._server._lock:
            srv = self._server
            srv.fault, srv.fault_path, srv.fault_count = fault, path, count
            srv.fault_ranged_only, srv.stall_seconds, srv.faults_served = ranged_only, stall_seconds, 0

    @property
    def faults_served(self) -> int:
        """How many requests got the fault since the last :meth:`set_fault`."""
        return self._server.faults_served

    def reset(self) -> None:
        """Forget the request log."""
        with self._server._lock:
            self._server._log.clear()
