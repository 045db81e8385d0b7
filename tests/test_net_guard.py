"""The SSRF guard: address classification, the allow-list, one resolution per connection to the checked
address (DNS rebinding), TLS name kept, redirects re-checked, no proxy from the environment."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx
import pytest

from openheavy.errors import AddressRefusedError, ConfigError
from openheavy.net.fetch import PageReader
from openheavy.net.guard import (
    AddressGuard,
    AllowedHost,
    IPAddress,
    guarded_client,
    parse_allow_hosts,
    refusal_reason,
)
from websites import FixtureSite, serving

REFUSED = [
    ("0.0.0.0", "unspecified"),
    ("0.1.2.3", "unspecified"),
    ("10.0.0.1", "private"),
    ("10.255.255.255", "private"),
    ("100.64.0.1", "carrier-grade NAT"),
    ("100.127.255.254", "carrier-grade NAT"),
    ("127.0.0.1", "loopback"),
    ("127.8.9.10", "loopback"),
    ("169.254.1.1", "link-local"),
    ("172.16.0.1", "private"),
    ("172.31.255.254", "private"),
    ("192.0.0.8", "reserved"),
    ("192.0.2.1", "reserved"),
    ("192.88.99.1", "reserved"),
    ("192.168.1.1", "private"),
    ("198.18.0.1", "reserved"),
    ("198.51.100.7", "reserved"),
    ("203.0.113.9", "reserved"),
    ("224.0.0.251", "multicast"),
    ("239.255.255.250", "multicast"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.255", "reserved"),
    ("169.254.169.254", "cloud metadata"),
    ("169.254.170.2", "cloud metadata"),
    ("100.100.100.200", "cloud metadata"),
    ("fd00:ec2::254", "cloud metadata"),
    ("::", "unspecified"),
    ("::1", "loopback"),
    ("::7f00:1", "reserved"),
    ("fc00::1", "private"),
    ("fd12:3456::1", "private"),
    ("fe80::1", "link-local"),
    ("fec0::1", "private"),
    ("ff02::1", "multicast"),
    ("2001:db8::1", "reserved"),
    ("100::1", "reserved"),
    ("64:ff9b:1::1", "private"),
    # IPv6 forms that lead to an IPv4 address are judged by it
    ("::ffff:127.0.0.1", "loopback, inside an IPv6 address"),
    ("::ffff:169.254.169.254", "cloud metadata, inside an IPv6 address"),
    ("64:ff9b::a00:1", "private, inside an IPv6 address"),  # NAT64 of 10.0.0.1
    ("2002:c0a8:101::1", "private, inside an IPv6 address"),  # 6to4 of 192.168.1.1
    ("2001:0:4136:e378:8000:63bf:80ff:fffe", "loopback, inside an IPv6 address"),  # Teredo to 127.0.0.1
]
PUBLIC = [
    "93.184.216.34",
    "8.8.8.8",
    "1.1.1.1",
    "100.63.255.255",  # just below 100.64.0.0/10
    "100.128.0.0",  # just above it
    "172.15.255.255",
    "172.32.0.1",
    "11.0.0.1",
    "2606:4700:4700::1111",
    "2a00:1450:4001:80b::200e",
    "::ffff:8.8.8.8",
    "64:ff9b::808:808",  # NAT64 of 8.8.8.8
]


@pytest.mark.parametrize(("address", "why"), REFUSED)
def test_every_non_public_range_is_refused(address: str, why: str) -> None:
    reason = refusal_reason(ipaddress.ip_address(address))
    assert reason is not None and reason.startswith(why)


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass(address: str) -> None:
    assert refusal_reason(ipaddress.ip_address(address)) is None


def test_allow_list_entries_parse() -> None:
    entries = parse_allow_hosts(["127.0.0.1:8888, localhost", "[::1]:8080", "Example.COM.", "[0:0::1]"])
    assert entries == (
        AllowedHost("127.0.0.1", 8888),
        AllowedHost("localhost", None),
        AllowedHost("::1", 8080),
        AllowedHost("example.com", None),
        AllowedHost("::1", None),
    )
    assert str(entries[2]) == "[::1]:8080"


@pytest.mark.parametrize(
    "bad", ["http://127.0.0.1:8888", "host:99999", "host:abc", "host:0", "a/b", "[::1]x"]
)
def test_bad_allow_list_entries_are_config_errors(bad: str) -> None:
    with pytest.raises(ConfigError, match="allow-host"):
        parse_allow_hosts([bad])


class FakeResolver:
    """Answers from a script, one answer per call, and counts the calls."""

    def __init__(self, *answers: Iterable[str]) -> None:
        self.answers = [[ipaddress.ip_address(a) for a in answer] for answer in answers]
        self.calls: list[tuple[str, int]] = []

    async def resolve(self, host: str, port: int) -> list[IPAddress]:
        self.calls.append((host, port))
        return self.answers[min(len(self.calls), len(self.answers)) - 1]


async def test_a_loopback_literal_is_refused_with_the_flag_to_allow_it() -> None:
    guard = AddressGuard()
    with pytest.raises(
        AddressRefusedError, match=r"127\.0\.0\.1 is a loopback address.*--allow-host 127\.0\.0\.1:8888"
    ):
        await guard.check("127.0.0.1", 8888)


async def test_the_allow_list_opens_one_host_and_port() -> None:
    guard = AddressGuard(["127.0.0.1:8888", "localhost"], resolver=FakeResolver(["127.0.0.1"]))
    assert await guard.check("127.0.0.1", 8888) == (ipaddress.ip_address("127.0.0.1"),)
    with pytest.raises(AddressRefusedError):
        await guard.check("127.0.0.1", 8889)
    assert await guard.check("LOCALHOST", 1234) == (ipaddress.ip_address("127.0.0.1"),)


async def test_metadata_is_refused_even_when_allow_listed() -> None:
    guard = AddressGuard(["metadata.internal", "169.254.169.254"], resolver=FakeResolver(["169.254.169.254"]))
    for host in ("metadata.internal", "169.254.169.254"):
        with pytest.raises(AddressRefusedError, match=r"cloud metadata address .* allow-listed or not"):
            await guard.check(host, 80)


async def test_a_name_with_one_private_address_among_public_ones_is_refused() -> None:
    resolver = FakeResolver(["93.184.216.34", "10.0.0.7"])
    with pytest.raises(AddressRefusedError, match=r"resolves to 10\.0\.0\.7, a private address") as caught:
        await AddressGuard(resolver=resolver).check("mixed.test", 443)
    assert caught.value.why == "private" and caught.value.host == "mixed.test"


async def test_an_ip_literal_is_not_resolved() -> None:
    resolver = FakeResolver(["10.0.0.1"])
    assert await AddressGuard(resolver=resolver).check("8.8.8.8", 53) == (ipaddress.ip_address("8.8.8.8"),)
    assert resolver.calls == []


class SpyStream(httpcore.AsyncNetworkStream):
    def __init__(self, log: list[tuple[str, Any]]) -> None:
        self.log = log

    async def start_tls(
        self,
        ssl_context: Any,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> Any:
        self.log.append(("start_tls", server_hostname))
        raise httpcore.ConnectError("spy: no TLS here")

    async def aclose(self) -> None:
        return None


class SpyBackend(httpcore.AsyncNetworkBackend):
    """Records where connections go, and connects nowhere."""

    def __init__(self) -> None:
        self.log: list[tuple[str, Any]] = []

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.AsyncNetworkStream:
        self.log.append(("connect", (host, port)))
        return SpyStream(self.log)

    async def sleep(self, seconds: float) -> None:
        return None


async def test_rebinding_cannot_redirect_the_connection() -> None:
    # A hostile DNS server answers a public address to the check and 127.0.0.1 to any later lookup.
    resolver = FakeResolver(["93.184.216.34"], ["127.0.0.1"])
    spy = SpyBackend()
    async with guarded_client(AddressGuard(resolver=resolver), user_agent="t", inner=spy) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get("https://rebind.test/admin")
    assert resolver.calls == [("rebind.test", 443)]
    # The connection went to the address that was checked; TLS was asked for the host name (SNI and
    # certificate check against it), not the address.
    assert spy.log == [("connect", ("93.184.216.34", 443)), ("start_tls", "rebind.test")]


async def test_the_checked_address_is_used_over_a_real_socket() -> None:
    with serving(FixtureSite()) as site:
        # First answer: the fixture site; any second lookup would send the request nowhere.
        resolver = FakeResolver(["127.0.0.1"], ["203.0.113.1"])
        guard = AddressGuard([f"rebind.test:{site.port}"], resolver=resolver)
        async with guarded_client(guard, user_agent="t") as client:
            response = await client.get(f"http://rebind.test:{site.port}/echo-host")
    # One resolution, and the connection went to its answer (the system resolver knows no rebind.test,
    # and the second answer leads nowhere); the Host header kept the name.
    assert response.status_code == 200
    assert f"Host header: rebind.test:{site.port}" in response.text
    assert resolver.calls == [("rebind.test", site.port)]


async def test_each_redirect_hop_is_checked() -> None:
    with serving(FixtureSite()) as site, serving(FixtureSite()) as inside:
        guard = AddressGuard([f"127.0.0.1:{site.port}"])
        async with guarded_client(guard, user_agent="t") as client:
            reader = PageReader(client)
            start = site.url(f"/to/{inside.port}/kestrel.html")
            with pytest.raises(AddressRefusedError) as caught:
                await reader.read(start)
    refused = caught.value
    assert refused.url == inside.url("/kestrel.html") and refused.chain == (start,)
    assert refused.why == "loopback" and refused.port == inside.port
    assert f"--allow-host 127.0.0.1:{inside.port}" in str(refused)
    assert inside.requests == []  # not one byte went to the refused server


async def test_an_allow_listed_redirect_target_is_followed() -> None:
    with serving(FixtureSite()) as site, serving(FixtureSite()) as other:
        guard = AddressGuard([f"127.0.0.1:{site.port}", f"127.0.0.1:{other.port}"])
        async with guarded_client(guard, user_agent="t") as client:
            page = await PageReader(client).read(site.url(f"/to/{other.port}/kestrel.html"))
    assert page.url == other.url("/kestrel.html") and "412 metres" in page.text


async def test_proxies_from_the_environment_are_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    # A proxy would make the connection for us, past the guard: the client must not pick one up.
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    with serving(FixtureSite()) as site:
        async with guarded_client(AddressGuard([f"127.0.0.1:{site.port}"]), user_agent="t") as client:
            response = await client.get(site.url("/kestrel.html"))
    assert response.status_code == 200 and len(site.requests) == 1
