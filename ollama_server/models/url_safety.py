"""SSRF guard for pulls: http(s) URLs only, to hosts that resolve (and connect) to public addresses."""
from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection
from urllib3.connection import HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool
from urllib3.connectionpool import HTTPSConnectionPool
from urllib3.exceptions import NewConnectionError

SCHEMES = ("http", "https")
REFUSAL = "refusing to pull from a private or loopback address"
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class UnsafeURL(ValueError):
    """A URL the service will not fetch: wrong scheme, no host, or a non-public address."""


class RefusedConnection(NewConnectionError):
    """A connection whose peer turned out to be non-public (DNS changed after the check)."""


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses an IPv6 address stands for (mapped, 6to4, Teredo, NAT64)."""
    found = [ip.ipv4_mapped, ip.sixtofour, ip.teredo[1] if ip.teredo else None]
    if ip in _NAT64:
        found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return [address for address in found if address is not None]


def blocked_reason(address: str) -> str | None:
    """Why an IP address is off limits ("loopback", "private", ...), or None when it is public."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone id
    candidates = [ip] + (_embedded_ipv4(ip) if isinstance(ip, ipaddress.IPv6Address) else [])
    for candidate in candidates:
        for reason in ("loopback", "unspecified", "link_local", "multicast", "private", "reserved"):
            if getattr(candidate, f"is_{reason}"):
                return reason.replace("_", "-")
        if not candidate.is_global:
            return "not globally routable"
    return None


def split_url(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of an http(s) URL; UnsafeURL for anything else."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeURL(f"invalid URL {url!r}: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise UnsafeURL(f"unsupported URL scheme {parts.scheme!r}: only http, https and hf sources are allowed")
    if not parts.hostname:
        raise UnsafeURL(f"URL {url!r} has no host")
    return scheme, parts.hostname, port or (443 if scheme == "https" else 80)


def check_url(url: str, allow_private: bool = False) -> None:
    """Refuse a URL unless every address its host resolves to is public (or private ones are allowed).

    A host that does not resolve raises socket.gaierror.
    """
    _, host, port = split_url(url)
    if allow_private:
        return
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except UnicodeError:
        raise UnsafeURL(f"invalid host name {host!r}") from None
    for *_, sockaddr in addresses:
        reason = blocked_reason(sockaddr[0])
        if reason:
            raise UnsafeURL(f"{REFUSAL} ({host} is {sockaddr[0]}, {reason})")


class _PeerCheck:
    """Checks the address a new socket actually connected to, so DNS rebinding cannot slip through."""

    def _new_conn(self):
        sock = super()._new_conn()
        peer = sock.getpeername()[0]
        reason = blocked_reason(peer)
        if reason:
            sock.close()
            raise RefusedConnection(self, f"{REFUSAL} ({self.host} connected to {peer}, {reason})")
        return sock


class _HTTPConnection(_PeerCheck, HTTPConnection):
    pass


class _HTTPSConnection(_PeerCheck, HTTPSConnection):
    pass


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


class PublicOnlyAdapter(HTTPAdapter):
    """A requests adapter whose connections fail unless the peer address is public."""

    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}


def refusal_in(exc: BaseException) -> str | None:
    """The refusal message inside a requests ConnectionError raised by PublicOnlyAdapter, if any."""
    seen = exc
    for _ in range(5):
        if isinstance(seen, RefusedConnection):
            return str(seen).split(": ", 1)[-1]
        inner = getattr(seen, "reason", None) or (seen.args[0] if seen.args else None)
        if not isinstance(inner, BaseException):
            return None
        seen = inner
    return None
