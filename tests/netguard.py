"""Refuse every non-loopback connection or DNS lookup made during the tests (CAMS never calls out)."""

from __future__ import annotations

import socket

_LOOPBACK_NAMES = {"localhost", "::1", "ip6-localhost"}


def _is_loopback(host: object) -> bool:
    if host is None:
        return True
    text = host.decode() if isinstance(host, bytes) else str(host)
    return text in _LOOPBACK_NAMES or text.startswith("127.") or text == "0.0.0.0"


class NonLoopbackError(OSError):
    """A test tried to reach a host other than this machine."""


def install() -> None:
    orig_connect = socket.socket.connect
    orig_gai = socket.getaddrinfo

    def connect(self: socket.socket, address):  # type: ignore[no-untyped-def]
        if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address[0]):
            raise NonLoopbackError(f"blocked connection to {address!r}: tests use loopback only")
        return orig_connect(self, address)

    def getaddrinfo(host, *args, **kwargs):  # type: ignore[no-untyped-def]
        if not _is_loopback(host):
            raise socket.gaierror(f"blocked DNS lookup of {host!r}: tests use loopback only")
        return orig_gai(host, *args, **kwargs)

    socket.socket.connect = connect  # type: ignore[method-assign]
    socket.getaddrinfo = getaddrinfo
