"""The sockets `sm serve` listens on: a Unix socket (0600), TCP, or what systemd passed.

A Unix socket is bound under a umask that leaves it owner-only from its first instant; a
socket file left by a server that died is replaced only when nothing answers on it. TCP
addresses are `HOST:PORT` (`parse_metrics_addr`'s forms). Socket activation follows
systemd's protocol (`LISTEN_PID`, `LISTEN_FDS`: the sockets are descriptors 3, 4, …).
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import SmError
from ..network import is_loopback

BACKLOG = 2048
FIRST_INHERITED_FD = 3  # systemd's SD_LISTEN_FDS_START


class ListenError(SmError):
    """A socket could not be made ready: the address is in use, the path is taken…"""


@dataclass
class Listener:
    """One listening socket and how it is described in logs and checks."""

    sock: socket.socket
    address: str  # `unix:PATH` or `HOST:PORT`
    path: Path | None = None  # the Unix socket file this process made (removed at the end)
    inode: int | None = None

    @property
    def is_tcp(self) -> bool:
        """True for a TCP socket (it needs the token, and TLS off loopback)."""
        return self.sock.family in (socket.AF_INET, socket.AF_INET6)

    @property
    def is_loopback(self) -> bool:
        """True for a Unix socket or a TCP socket bound to a loopback address."""
        if not self.is_tcp:
            return True
        return is_loopback(str(self.sock.getsockname()[0]))

    def close(self) -> None:
        """Close the socket; remove its file if it is still the one this process made."""
        self.sock.close()
        if self.path is not None and self.inode is not None:
            with contextlib.suppress(OSError):
                if os.lstat(self.path).st_ino == self.inode:
                    self.path.unlink()


def unix_listener(path: Path) -> Listener:
    """A Unix socket at `path`, mode 0600; a stale socket file there is replaced."""
    _clear_stale(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)  # owner read/write only, from the bind on
    try:
        sock.bind(str(path))
    except OSError as exc:
        sock.close()
        raise ListenError(f"cannot create the socket {path}: {exc.strerror or exc}",
                          hint=f"check that {path.parent} exists and is writable") from None
    finally:
        os.umask(old_umask)
    os.chmod(path, 0o600)  # the umask decided it already; said again for filesystems that ignore it
    sock.listen(BACKLOG)
    return Listener(sock, f"unix:{path}", path, os.lstat(path).st_ino)


def _clear_stale(path: Path) -> None:
    """Remove a socket file nobody listens on; refuse a live one or any other file."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise ListenError(f"{path} exists and is not a socket; it was left as it is",
                          hint="move it away, or pass --socket PATH")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(2)
        probe.connect(str(path))
    except (ConnectionRefusedError, FileNotFoundError):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # a server that died left it: nothing listens
        return
    except OSError as exc:
        raise ListenError(f"cannot check the socket {path}: {exc.strerror or exc}") from None
    finally:
        probe.close()
    raise ListenError(f"another server listens on {path}",
                      hint="stop it first, or pass --socket with another path")


def tcp_listener(host: str, port: int) -> Listener:
    """A TCP socket bound to `host:port` (port 0: any free port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        infos = socket.getaddrinfo(host, port, family, socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ListenError(f"cannot resolve {host}: {exc.strerror or exc}") from None
    # proto IPPROTO_TCP, as getaddrinfo gives it: asyncio sets TCP_NODELAY only on sockets
    # that say so (with proto 0 every answer's body waited for a delayed ACK: 40 ms)
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise ListenError(f"cannot listen on {host}:{port}: {exc.strerror or exc}",
                          hint="is another server on that port? pass another --listen") from None
    sock.listen(BACKLOG)
    bound = sock.getsockname()
    shown = f"[{bound[0]}]" if family == socket.AF_INET6 else bound[0]
    return Listener(sock, f"{shown}:{bound[1]}")


def inherited_listeners(environ: dict[str, str] | None = None) -> list[Listener]:
    """The sockets systemd passed this process (socket activation), or none."""
    env = os.environ if environ is None else environ
    if env.get("LISTEN_PID") != str(os.getpid()):
        return []
    count = env.get("LISTEN_FDS", "0")
    if not count.isdigit():
        return []
    found = []
    for fd in range(FIRST_INHERITED_FD, FIRST_INHERITED_FD + int(count)):
        sock = socket.socket(fileno=fd)
        os.set_inheritable(fd, False)
        name = sock.getsockname()
        if sock.family == socket.AF_UNIX:
            address = f"unix:{name.decode() if isinstance(name, bytes) else name}"
        else:
            address = f"{name[0]}:{name[1]}"
        found.append(Listener(sock, f"{address} (from systemd)"))
    return found


@contextlib.contextmanager
def closing_all(listeners: list[Listener]) -> Iterator[list[Listener]]:
    """Close every listener (and remove the socket files this process made) at the end."""
    try:
        yield listeners
    finally:
        for listener in listeners:
            listener.close()
