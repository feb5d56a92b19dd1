"""Server-side request forgery guard for the crawler: refuse hosts that resolve to loopback, private, link-local,
multicast, reserved or unspecified addresses unless the user exempted them by name or network.

The check runs inside aiohttp's DNS resolver, so the address checked is the address connected to (no DNS-rebinding gap);
IP literals, which aiohttp never resolves, are checked by `AddressGuard.check_host` before the request.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Iterable

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
INET_ATON_CHARS = frozenset("0123456789abcdefx.")  # decimal, octal and 0x-hex parts; anything else is a host name


class BlockedAddress(OSError):
    """A host resolved to an address the guard refuses; the message names the host, the address and why."""


def parse_allow_hosts(entries: Iterable[str]) -> tuple[frozenset[str], tuple[ipaddress._BaseNetwork, ...]]:
    """Split `allow_hosts` into host names (lower-case) and networks ('127.0.0.1', '10.0.0.0/8', '::1')."""
    names, networks = set(), []
    for entry in entries:
        entry = entry.strip()
        if not entry:
            raise ValueError("allow_hosts has an empty entry; give a host name, an IP address or a CIDR network")
        try:
            networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
        except ValueError:
            if "/" in entry or ":" in entry:
                raise ValueError(f"allow_hosts entry {entry!r} is neither a host name nor a valid IP network") from None
            names.add(entry.lower().rstrip("."))
    return frozenset(names), tuple(networks)


def forbidden_reason(ip: IPAddress) -> str | None:
    """Why an address may not be fetched by default, or None for a public unicast address."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for kind in ("loopback", "link_local", "multicast", "unspecified", "reserved", "private"):
        if getattr(ip, f"is_{kind}"):
            return kind.replace("_", "-")
    return None if ip.is_global else "non-global"  # e.g. 100.64.0.0/10, carrier-grade NAT


class AddressGuard:
    """Decides whether a host name or address may be fetched, given the exempt names and networks."""

    def __init__(self, allow_hosts: Iterable[str] = ()):
        self.names, self.networks = parse_allow_hosts(allow_hosts)

    def check_ip(self, host: str, ip: IPAddress) -> None:
        """Raise BlockedAddress unless `ip` is public or exempt."""
        if host.lower().rstrip(".") in self.names or any(ip in net for net in self.networks):
            return
        reason = forbidden_reason(ip)
        if reason:
            where = f"is a {reason} address" if host.strip("[]") == str(ip) else f"resolves to {reason} address {ip}"
            raise BlockedAddress(f"{host} {where}; exempt it with allow_hosts if intended (a rerun with retry_failed fetches it)")

    def check_host(self, host: str) -> None:
        """Check an IP-literal host now, in any spelling (aiohttp never resolves those); host names are checked by
        GuardedResolver when connecting."""
        ip = ip_literal(host)
        if ip is not None:
            self.check_ip(host, ip)


def ip_literal(host: str) -> IPAddress | None:
    """The address an IP-literal host names, or None for a host name. Accepts every spelling a resolver would turn into
    an address: '127.0.0.2', '[::1]', '127.0.0.2.' and the inet_aton forms '2130706434', '127.2', '0x7f000002', '0177.0.0.2'."""
    bare = host.strip("[]").split("%")[0]
    try:
        return ipaddress.ip_address(bare.rstrip("."))
    except ValueError:
        pass
    bare = bare.rstrip(".")
    if not bare or not set(bare.lower()) <= INET_ATON_CHARS or not bare[0].isdigit():
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(bare))
    except OSError:
        return None


class GuardedResolver(AbstractResolver):
    """aiohttp resolver that refuses a host if any of its addresses is forbidden (a mixed answer is refused whole)."""

    def __init__(self, guard: AddressGuard):
        self.guard = guard
        self.inner = DefaultResolver()

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        results = await self.inner.resolve(host, port, family)
        for result in results:
            self.guard.check_ip(host, ipaddress.ip_address(result["host"]))
        return results

    async def close(self) -> None:
        await self.inner.close()
