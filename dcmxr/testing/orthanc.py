"""A throw-away Orthanc (with its DICOMweb plugin) in its own network namespace, for tests and benchmarks.

:class:`Orthanc` starts the Debian ``Orthanc`` binary on loopback inside a new
network namespace (``unshare -n`` then ``ip link set lo up``) from a config in
a temp dir, and makes it reachable from this namespace through a small TCP
relay: a listening socket on this namespace's 127.0.0.1 whose relay thread has
entered Orthanc's namespace (``setns``) to open the outgoing connections. It is
stopped by pid. :func:`skip_reason` says why it cannot run here (or None).

Example
-------
>>> with Orthanc(tmp_dir) as server:                      # doctest: +SKIP
...     DICOMwebClient(server.dicomweb_url).store_instances(datasets)
"""

from __future__ import annotations

import ctypes
import json
import os
import selectors
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

__all__ = ["Orthanc", "Relay", "skip_reason", "ORTHANC", "PLUGIN"]

ORTHANC = shutil.which("Orthanc")
PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
CLONE_NEWNET = 0x40000000


def skip_reason() -> str | None:
    """Why Orthanc cannot be started here (missing packages, no namespaces), or None."""
    if ORTHANC is None or not os.path.exists(PLUGIN):
        return "Orthanc with its DICOMweb plugin is not installed (apt-get install orthanc orthanc-dicomweb)"
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "unshare/ip (util-linux, iproute2) are needed to give Orthanc its own network namespace"
    try:
        import dicomweb_client  # noqa: F401  (only whether it imports)
    except ImportError:
        return "dicomweb-client is not installed (pip install 'dcmxr[dicomweb]')"
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True)
    if probe.returncode != 0:
        return f"cannot create a network namespace here: {probe.stderr.decode().strip()}"
    return None


def _setns(path: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns({path}) failed")
    finally:
        os.close(fd)


class Relay:
    """127.0.0.1:<free port> here -> 127.0.0.1:<port> inside another network namespace."""

    def __init__(self, netns: str, port: int):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.target = port
        self.netns = netns
        self.stopping = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        _setns(self.netns)  # this thread only; the listener stays in the test's namespace
        sel = selectors.DefaultSelector()
        sel.register(self.listener, selectors.EVENT_READ, None)
        self.listener.settimeout(0.2)
        while not self.stopping:
            for key, _ in sel.select(timeout=0.2):
                if key.data is None:
                    try:
                        conn, _ = self.listener.accept()
                    except OSError:
                        continue
                    try:
                        up = socket.create_connection(("127.0.0.1", self.target), timeout=10)
                    except OSError:  # not listening yet: drop the client, it retries
                        conn.close()
                        continue
                    for sock in (conn, up):  # no Nagle + delayed-ACK stalls on small writes
                        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                        sock.setblocking(False)
                    sel.register(conn, selectors.EVENT_READ, up)
                    sel.register(up, selectors.EVENT_READ, conn)
                    continue
                src, dst = key.fileobj, key.data
                try:
                    data = src.recv(1 << 16)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    data = b""
                if data:
                    dst.setblocking(True)
                    dst.sendall(data)
                    dst.setblocking(False)
                else:
                    for s in (src, dst):
                        try:
                            sel.unregister(s)
                        except (KeyError, ValueError):
                            pass
                        s.close()
        sel.close()

    def close(self) -> None:
        self.stopping = True
        self.thread.join(timeout=5)
        self.listener.close()


class Orthanc:
    """Orthanc in its own network namespace (see the module docstring).

    Parameters
    ----------
    root : path
        Temp folder for the config, the database and the log.
    name : str
        Orthanc's ``Name`` (answered by ``/system``).

    Attributes
    ----------
    url : str
        ``http://127.0.0.1:PORT`` (the relay) — the REST root.
    dicomweb_url : str
        ``url + "/dicom-web"``.
    pid : int
        The process started (``unshare`` exec's into Orthanc, so this is Orthanc's pid).
    """

    def __init__(self, root: str | os.PathLike, name: str = "dcmxr-test"):
        self.root = Path(root)
        self.name = name
        self.proc: subprocess.Popen | None = None
        self.relay: Relay | None = None
        self._log = None

    @property
    def dicomweb_url(self) -> str:
        return self.url + "/dicom-web"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def _log_tail(self) -> str:
        try:
            return (self.root / "orthanc.log").read_text()[-2000:]
        except OSError:
            return ""

    def start(self, timeout: float = 30.0) -> "Orthanc":
        import requests

        config = {
            "Name": self.name, "StorageDirectory": str(self.root / "db"), "IndexDirectory": str(self.root / "db"),
            "HttpPort": 8042, "HttpBindAddress": "127.0.0.1", "DicomServerEnabled": False,
            "RemoteAccessAllowed": False, "AuthenticationEnabled": False,
            "Plugins": [PLUGIN], "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        }
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "orthanc.json").write_text(json.dumps(config))
        self._log = open(self.root / "orthanc.log", "wb")
        self.proc = subprocess.Popen(
            ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$0" "$1"', ORTHANC,
             str(self.root / "orthanc.json")],
            stdout=self._log, stderr=subprocess.STDOUT,
        )
        try:
            netns = f"/proc/{self.proc.pid}/ns/net"
            deadline = time.monotonic() + timeout
            while True:  # until sh has exec'd Orthanc in the new namespace (bounded by the deadline)
                if self.proc.poll() is not None:
                    raise RuntimeError(f"Orthanc exited: {self._log_tail()}")
                if os.readlink(netns) != os.readlink("/proc/self/ns/net") and \
                        "Orthanc" in open(f"/proc/{self.proc.pid}/comm").read():
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"Orthanc did not start: {self._log_tail()}")
                time.sleep(0.05)
            self.relay = Relay(netns, 8042)
            self.url = f"http://127.0.0.1:{self.relay.port}"
            deadline = time.monotonic() + timeout
            while True:  # bounded by the deadline
                try:
                    if requests.get(self.url + "/system", timeout=2).ok:
                        break
                except requests.RequestException:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"Orthanc did not answer: {self._log_tail()}")
                time.sleep(0.1)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.relay is not None:
            self.relay.close()
            self.relay = None
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> "Orthanc":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
