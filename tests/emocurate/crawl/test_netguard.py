"""The SSRF guard: which addresses are refused, and how allow_hosts exempts names and networks (no traffic sent)."""

from __future__ import annotations

import asyncio
import ipaddress

import pytest

from emocurate.crawl.netguard import AddressGuard, BlockedAddress, GuardedResolver, forbidden_reason, parse_allow_hosts


@pytest.mark.parametrize(
    "ip, reason",
    [
        ("127.0.0.2", "loopback"), ("::1", "loopback"), ("10.1.2.3", "private"), ("192.168.0.1", "private"),
        ("169.254.169.254", "link-local"), ("fe80::1", "link-local"), ("224.0.0.1", "multicast"),
        ("0.0.0.0", "unspecified"), ("::ffff:127.0.0.1", "loopback"), ("100.64.0.1", "non-global"), ("8.8.8.8", None), ("2606:4700::1111", None),
    ],
)  # fmt: skip
def test_forbidden_reason(ip, reason):
    assert forbidden_reason(ipaddress.ip_address(ip)) == reason


def test_allow_hosts_exempts_exactly_what_it_names():
    guard = AddressGuard(["127.0.0.1", "10.0.0.0/8", "Images.Internal"])
    guard.check_host("127.0.0.1")
    guard.check_host("10.9.9.9")
    guard.check_ip("images.internal", ipaddress.ip_address("192.168.1.1"))  # exempt by name
    with pytest.raises(BlockedAddress, match="127.0.0.2 is a loopback address"):
        guard.check_host("127.0.0.2")
    with pytest.raises(BlockedAddress, match=r"evil.example resolves to private address 192.168.1.1"):
        guard.check_ip("evil.example", ipaddress.ip_address("192.168.1.1"))
    guard.check_host("example.org")  # names are checked by the resolver, not here


def test_parse_allow_hosts_errors():
    assert parse_allow_hosts(["a.b", "::1"])[0] == frozenset({"a.b"})
    with pytest.raises(ValueError, match="neither a host name nor a valid IP network"):
        parse_allow_hosts(["10.0.0.0/40"])
    with pytest.raises(ValueError, match="empty entry"):
        parse_allow_hosts([" "])


def test_resolver_refuses_names_that_resolve_to_loopback():
    async def resolve(guard):
        resolver = GuardedResolver(guard)
        try:
            return await resolver.resolve("localhost", 80)
        finally:
            await resolver.close()

    with pytest.raises(BlockedAddress, match="localhost resolves to loopback"):
        asyncio.run(resolve(AddressGuard()))
    assert asyncio.run(resolve(AddressGuard(["localhost"])))


@pytest.mark.parametrize(
    "host, ip",
    [
        ("127.0.0.2", "127.0.0.2"), ("2130706434", "127.0.0.2"), ("127.2", "127.0.0.2"), ("0x7f000002", "127.0.0.2"),
        ("0177.0.0.2", "127.0.0.2"), ("127.0.0.2.", "127.0.0.2"), ("[::1]", "::1"), ("0X7F.1", "127.0.0.1"),
        ("example.org", None), ("cafe.be", None), ("0x1.com", None), ("1.2.3.4.5", None), ("", None),
    ],
)  # fmt: skip
def test_every_spelling_of_an_address_is_checked(host, ip):
    from emocurate.crawl.netguard import ip_literal

    assert ip_literal(host) == (ipaddress.ip_address(ip) if ip else None)
    if ip and ip != "::1":
        with pytest.raises(BlockedAddress, match="loopback"):
            AddressGuard(["127.0.0.3"]).check_host(host)
