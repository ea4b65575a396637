"""The control socket: live operations between spyderctl and the running daemon.

`<runtime_dir>/control.sock`, AF_UNIX stream, mode 0660 root:spyder. A client sends one
JSON object on one line and reads JSON lines back:

    {"op": "status"}                      -> {"ok": true, "status": {...}}
    {"op": "reload"}                      -> {"ok": true|false, "rules": N, "errors": "..."}
    {"op": "follow", "topics": ["findings", "traces"]}
                                          -> {"ok": true}, then one line per item:
                                             {"topic": "findings", "item": {...}}

Errors come back as `{"ok": false, "error": "..."}`; anything that is not one JSON object
with a string `op` (garbage, deep nesting, a list of topics that is not one) is a bad request,
counted, never an exception in the daemon. Beyond the file mode, every peer is
checked with SO_PEERCRED: root, or the `spyder` group (primary or supplementary), or the
connection is answered "permission denied" and closed.

The daemon serves the socket from its own loop: everything is non-blocking and `service()`
returns at once when nothing is ready, so a stuck or slow client never stalls capture. A
follower that does not read is dropped once a megabyte is queued for it (counted).
Limits, so a local user in group `spyder` cannot stall the daemon or lock others out: a
request must arrive whole within `request_timeout` seconds of the connect and be at most
64 KiB; an answer not read within `reply_timeout` is dropped; at most 64 connections in all
and 16 per user other than root (root always gets one of the last slots).
"""

from __future__ import annotations

import json
import logging
import os
import selectors
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spyderd.common import access
from spyderd.errors import AccessError, NotRunningError, SpyderError

log = logging.getLogger("spyderd.control")

SOCKET_NAME = "control.sock"
MAX_REQUEST = 64 * 1024
MAX_QUEUED = 1 << 20
MAX_CONNECTIONS = 64  # idle clients cannot exhaust the daemon's descriptors
MAX_PER_UID = 16  # per user other than root
ROOT_RESERVE = 4  # of MAX_CONNECTIONS, only root may take these
REQUEST_TIMEOUT = 5.0  # seconds from connect to a complete request line
REPLY_TIMEOUT = 5.0  # seconds for a client to read its answer
TOPICS = ("findings", "traces", "alerts")

Handler = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass
class _Conn:
    sock: socket.socket
    peer: tuple[int, int, int]
    inbuf: bytes = b""
    outbuf: bytes = b""
    topics: set[str] = field(default_factory=set)
    closing: bool = False  # close once outbuf is flushed
    allowed: bool = False  # SO_PEERCRED said root or group spyder
    deadline: float = 0.0  # monotonic time by which the request (or reply) must be done


class ControlServer:
    """Accepts, authorizes and answers control requests without ever blocking."""

    def __init__(self, runtime_dir: Path, handlers: dict[str, Handler],
                 gid: int | None, *, request_timeout: float = REQUEST_TIMEOUT,
                 reply_timeout: float = REPLY_TIMEOUT) -> None:
        self.path = runtime_dir / SOCKET_NAME
        self.handlers = handlers
        self.gid = gid
        self.request_timeout = request_timeout
        self.reply_timeout = reply_timeout
        self.sel = selectors.DefaultSelector()
        self.conns: dict[int, _Conn] = {}
        self.stats = {"requests": 0, "rejected": 0, "followers_dropped": 0, "bad_requests": 0,
                      "refused_busy": 0, "timeouts": 0}
        self.listener: socket.socket | None = None

    def start(self) -> None:
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_NONBLOCK
                          | socket.SOCK_CLOEXEC)
        old = os.umask(0o117)  # the socket is born 0660: no window where others can connect
        try:
            s.bind(str(self.path))
        finally:
            os.umask(old)
        access.restrict(self.path, access.SOCKET_MODE, self.gid)
        s.listen(16)
        self.listener = s
        self.sel.register(s, selectors.EVENT_READ, None)

    def fileno(self) -> int:
        return self.listener.fileno() if self.listener else -1

    def service(self, timeout: float = 0) -> None:
        """Handle whatever is ready now; returns at once when nothing is."""
        if self.listener is None:
            return
        self._expire(time.monotonic())
        for key, mask in self.sel.select(timeout):
            if key.data is None:
                self._accept()
                continue
            conn = key.data
            if mask & selectors.EVENT_READ:
                self._read(conn)
            if mask & selectors.EVENT_WRITE and conn.sock.fileno() >= 0:
                self._flush(conn)

    def publish(self, topic: str, item: dict[str, Any]) -> None:
        """Queue an item for every follower of `topic`."""
        line = None
        for conn in list(self.conns.values()):
            if topic not in conn.topics:
                continue
            if line is None:
                line = _line({"topic": topic, "item": item})
            if len(conn.outbuf) + len(line) > MAX_QUEUED:
                self.stats["followers_dropped"] += 1
                log.warning("dropping control-socket follower pid %d: it stopped reading",
                            conn.peer[0])
                self._close(conn)
                continue
            conn.outbuf += line
            self._flush(conn)

    def close(self) -> None:
        for conn in list(self.conns.values()):
            self._close(conn)
        if self.listener is not None:
            self.sel.unregister(self.listener)
            self.listener.close()
            self.listener = None
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass
        self.sel.close()

    # -- internals -------------------------------------------------------------------------

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            sock.setblocking(False)
            try:
                peer = access.peer_credentials(sock)
            except OSError:
                sock.close()
                continue
            pid, uid, gid = peer
            if not self._room_for(uid):
                self.stats["refused_busy"] += 1
                sock.close()
                continue
            conn = _Conn(sock, peer, deadline=time.monotonic() + self.request_timeout)
            conn.allowed = access.peer_allowed(uid, gid, access.peer_groups(sock, pid), self.gid)
            self.conns[sock.fileno()] = conn
            self.sel.register(sock, selectors.EVENT_READ, conn)

    def _room_for(self, uid: int) -> bool:
        """Connection limits: in all, per user, and a few slots kept for root."""
        if len(self.conns) >= MAX_CONNECTIONS:
            return False
        if uid == 0:
            return True
        mine = sum(1 for c in self.conns.values() if c.peer[1] == uid)
        return mine < MAX_PER_UID and len(self.conns) < MAX_CONNECTIONS - ROOT_RESERVE

    def _expire(self, now: float) -> None:
        """Drop clients that did not send a whole request, or read their answer, in time."""
        for conn in list(self.conns.values()):
            if conn.deadline and now > conn.deadline:
                self.stats["timeouts"] += 1
                log.info("control socket: dropped pid %d (%s in time)", conn.peer[0],
                         "did not read its answer" if conn.closing else "sent no request")
                self._close(conn)

    def _read(self, conn: _Conn) -> None:
        try:
            data = conn.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._close(conn)
            return
        if conn.closing or conn.topics:
            return  # answered already / followers only listen
        conn.inbuf += data
        if b"\n" not in conn.inbuf:
            if len(conn.inbuf) > MAX_REQUEST:
                self.stats["bad_requests"] += 1
                self._reply(conn, {"ok": False, "error": "request too long"}, close=True)
            return
        raw, _, conn.inbuf = conn.inbuf.partition(b"\n")
        self._dispatch(conn, raw)

    def _dispatch(self, conn: _Conn, raw: bytes) -> None:
        """Answer one request; a peer that is not allowed is answered only with a refusal
        (after its request was read, so the refusal is not lost to a connection reset)."""
        if not conn.allowed:
            pid, uid, gid = conn.peer
            self.stats["rejected"] += 1
            log.warning("control socket: refused pid %d uid %d gid %d (not root, not in "
                        "group '%s')", pid, uid, gid, access.GROUP)
            self._reply(conn, {"ok": False, "error": access.denied(
                self.path, f"uid {uid} is neither root nor in group '{access.GROUP}'")},
                close=True)
            return
        self.stats["requests"] += 1
        req = _parse(raw)
        if req is None:
            self.stats["bad_requests"] += 1
            self._reply(conn, {"ok": False, "error": "bad request: expected one JSON object "
                               "with an 'op' on one line"}, close=True)
            return
        op = req["op"]
        if op == "follow":
            wanted = req.get("topics") or ["findings"]
            if not isinstance(wanted, list) or not all(isinstance(t, str) for t in wanted):
                self.stats["bad_requests"] += 1
                self._reply(conn, {"ok": False, "error": "bad request: 'topics' must be a "
                                   "list of names"}, close=True)
                return
            topics = set(wanted)
            unknown = topics - set(TOPICS)
            if unknown:
                self._reply(conn, {"ok": False, "error": f"unknown topics {sorted(unknown)}; "
                                   f"expected some of {list(TOPICS)}"}, close=True)
                return
            conn.topics = topics
            conn.deadline = 0.0  # a follower waits as long as it likes (MAX_QUEUED bounds it)
            self._reply(conn, {"ok": True, "topics": sorted(topics)})
            return
        handler = self.handlers.get(op)
        if handler is None:
            self._reply(conn, {"ok": False, "error": f"unknown op {op!r}; expected one of "
                               f"{sorted([*self.handlers, 'follow'])}"}, close=True)
            return
        try:
            answer = handler(req)
        except SpyderError as exc:
            answer = {"ok": False, "error": str(exc)}
        except Exception as exc:  # a handler bug must not kill the daemon
            log.exception("control op %s failed", op)
            answer = {"ok": False, "error": f"internal error: {type(exc).__name__}: {exc}"}
        self._reply(conn, answer, close=True)

    def _reply(self, conn: _Conn, obj: dict[str, Any], close: bool = False) -> None:
        conn.outbuf += _line(obj)
        conn.closing = conn.closing or close
        if conn.closing:
            conn.deadline = time.monotonic() + self.reply_timeout
        self._flush(conn)

    def _flush(self, conn: _Conn) -> None:
        while conn.outbuf:
            try:
                n = conn.sock.send(conn.outbuf)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self._close(conn)
                return
            conn.outbuf = conn.outbuf[n:]
        if not conn.outbuf and conn.closing:
            self._close(conn)
            return
        want = selectors.EVENT_READ | (selectors.EVENT_WRITE if conn.outbuf else 0)
        try:
            self.sel.modify(conn.sock, want, conn)
        except (KeyError, ValueError):
            pass

    def _close(self, conn: _Conn) -> None:
        fd = conn.sock.fileno()
        if fd >= 0:
            try:
                self.sel.unregister(conn.sock)
            except (KeyError, ValueError):
                pass
            self.conns.pop(fd, None)
            conn.sock.close()


def _parse(raw: bytes) -> dict[str, Any] | None:
    """One request object with a string `op`, or None for anything else."""
    try:
        req = json.loads(raw)
    except (ValueError, RecursionError):  # garbage, bad UTF-8, nesting deeper than Python's
        return None
    if not isinstance(req, dict) or not isinstance(req.get("op"), str):
        return None
    return req


def _line(obj: dict[str, Any]) -> bytes:
    return (json.dumps(obj, separators=(",", ":")) + "\n").encode()


# -- client side (spyderctl) ------------------------------------------------------------------

def connect(runtime_dir: Path, timeout: float = 10.0) -> socket.socket:
    """A connected client socket; AccessError / NotRunningError with a readable message."""
    path = runtime_dir / SOCKET_NAME
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    s.settimeout(timeout)
    try:
        s.connect(str(path))
    except PermissionError:
        s.close()
        raise AccessError(access.denied(path)) from None
    except (FileNotFoundError, ConnectionRefusedError):
        s.close()
        if not os.access(runtime_dir, os.X_OK) and runtime_dir.exists():
            raise AccessError(access.denied(runtime_dir)) from None
        raise NotRunningError(f"spyderd is not running (no control socket at {path})") from None
    return s


def _lines(s: socket.socket) -> Iterator[dict[str, Any]]:
    buf = b""
    while True:
        try:
            data = s.recv(65536)
        except TimeoutError:
            raise SpyderError("no answer from spyderd on the control socket") from None
        if not data:
            if buf.strip():
                yield json.loads(buf)
            return
        buf += data
        while b"\n" in buf:
            raw, _, buf = buf.partition(b"\n")
            if raw.strip():
                yield json.loads(raw)


def _checked(answer: dict[str, Any]) -> dict[str, Any]:
    err = answer.get("error", "")
    if not answer.get("ok") and err.startswith("permission denied"):
        raise AccessError(err)
    return answer


def request(runtime_dir: Path, op: str, timeout: float = 30.0, **args: Any) -> dict[str, Any]:
    """One request, one answer."""
    with connect(runtime_dir, timeout) as s:
        s.sendall(_line({"op": op, **args}))
        for answer in _lines(s):
            return _checked(answer)
    raise SpyderError("spyderd closed the control socket without answering")


def follow(runtime_dir: Path, topics: list[str]) -> Iterator[dict[str, Any]]:
    """Subscribe now (errors raise here), then iterate the items published on `topics` as
    they come; the iteration blocks, and ends when the daemon stops."""
    s = connect(runtime_dir)
    try:
        s.sendall(_line({"op": "follow", "topics": topics}))
        lines = _lines(s)
        first = next(lines, None)
        if first is None:
            raise NotRunningError("spyderd closed the control socket")
        first = _checked(first)
        if not first.get("ok"):
            raise SpyderError(first.get("error", "follow refused"))
        s.settimeout(None)
    except BaseException:
        s.close()
        raise
    return _stream(s, lines)


def _stream(s: socket.socket, lines: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    with s:
        yield from lines
