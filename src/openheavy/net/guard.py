"""The SSRF guard: openheavy connects only to public addresses, unless a host is allow-listed.

A page an agent opens is chosen by a search engine, that is by strangers, and a page may redirect
anywhere: to `http://127.0.0.1:8080/admin`, to a router on the LAN, to the cloud metadata service that
hands out credentials. So before every TCP connection (each redirect hop is a new request and goes
through here again) the host is resolved once, every address it resolves to is classified, and the
connection is refused when any of them is not public. The connection then goes to an address that was
checked, never through a second DNS lookup that a hostile DNS server could answer differently
("DNS rebinding"). TLS still verifies the certificate against the host name (SNI = the name), and the
Host header keeps the name: httpcore takes both from the URL, not from the address we connect to.

`AddressGuard.check` is the policy; `GuardedNetworkBackend` applies it at the one place every
connection of an httpx client passes (httpcore's network backend); `guarded_client` builds such a client.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

import httpcore
import httpx

from openheavy.errors import AddressRefusedError, ConfigError
from openheavy.option_lists import split_commas

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Instance metadata services hand out cloud credentials: refused even for an allow-listed host name,
# since no research question needs them. (All of them are also in a refused range below.)
METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean, Oracle, ...
        "169.254.170.2",  # AWS ECS task metadata
        "169.254.169.253",  # AWS VPC DNS
        "100.100.100.200",  # Alibaba Cloud
        "192.0.0.192",  # Oracle Cloud (older)
        "fd00:ec2::254",  # AWS, IPv6
        "fd00:ec2::253",  # AWS VPC DNS, IPv6
    )
)

# Ranges spelled out rather than taken from `ipaddress`'s is_private / is_global, whose answers have
# changed between Python versions (100.64.0.0/10 is neither private nor global there).
_REFUSED: tuple[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str], ...] = tuple(
    (ipaddress.ip_network(net), why)
    for net, why in (
        ("0.0.0.0/8", "unspecified"),
        ("10.0.0.0/8", "private"),
        ("100.64.0.0/10", "carrier-grade NAT (shared)"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local"),
        ("172.16.0.0/12", "private"),
        ("192.0.0.0/24", "reserved (IETF protocol assignments)"),
        ("192.0.2.0/24", "reserved (documentation)"),
        ("192.88.99.0/24", "reserved (6to4 relay)"),
        ("192.168.0.0/16", "private"),
        ("198.18.0.0/15", "reserved (benchmarking)"),
        ("198.51.100.0/24", "reserved (documentation)"),
        ("203.0.113.0/24", "reserved (documentation)"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved"),  # includes 255.255.255.255, broadcast
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("::/96", "reserved (IPv4-compatible)"),
        ("64:ff9b:1::/48", "private (local-use NAT64)"),
        ("100::/64", "reserved (discard)"),
        ("2001:db8::/32", "reserved (documentation)"),
        ("fc00::/7", "private (unique local)"),
        ("fe80::/10", "link-local"),
        ("fec0::/10", "private (site-local)"),
        ("ff00::/8", "multicast"),
    )
)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def refusal_reason(address: IPAddress) -> str | None:
    """Why openheavy may not connect to `address` ("loopback", "private", "cloud metadata", ...), or
    None for a public address. IPv6 forms that carry an IPv4 address (mapped, NAT64, 6to4, Teredo) are
    judged by the IPv4 address they lead to."""
    if address in METADATA_ADDRESSES:
        return "cloud metadata"
    embedded = _embedded_ipv4(address) if isinstance(address, ipaddress.IPv6Address) else None
    if embedded is not None:
        inner = refusal_reason(embedded)
        return f"{inner}, inside an IPv6 address" if inner else None
    # A network never contains an address of the other IP version, so one list serves both.
    return next((why for network, why in _REFUSED if address in network), None)


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]  # the client's address: where the tunnel ends
    return None


# ------------------------------------------------------------------ allow-list


@dataclass(frozen=True)
class AllowedHost:
    """An allow-list entry: a host name or address, and a port (None: any port)."""

    host: str
    port: int | None = None

    def matches(self, host: str, port: int) -> bool:
        return self.host == host and (self.port is None or self.port == port)

    def __str__(self) -> str:
        shown = f"[{self.host}]" if ":" in self.host else self.host
        return shown if self.port is None else f"{shown}:{self.port}"


def normalize_host(host: str) -> str:
    """A host as the guard compares it: lower case, no brackets or trailing dot, IDNA-encoded, and an
    IP address in its canonical spelling (so `[0:0::1]` and `::1` are one host)."""
    host = host.strip().strip("[]").rstrip(".").lower()
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError:
        return host


def parse_allow_hosts(values: Iterable[str]) -> tuple[AllowedHost, ...]:
    """Allow-list entries from `HOST[:PORT]` strings, each possibly a comma-separated list. An IPv6
    address with a port is written in brackets: `[::1]:8888`. Raises `ConfigError` for a bad entry."""
    return tuple(_parse_allow_entry(text) for text in split_commas(values))


def _parse_allow_entry(text: str) -> AllowedHost:
    host, port_text = text, ""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest.removeprefix(":") if rest.startswith(":") else ""
        if rest and not rest.startswith(":"):
            host = ""
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    if "/" in host or "://" in text or not host:
        raise ConfigError(
            f"bad --allow-host entry {text!r} — write HOST or HOST:PORT (e.g. 127.0.0.1:8888, localhost,"
            " [::1]:8888), not a URL"
        )
    port: int | None = None
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ConfigError(f"bad port in --allow-host entry {text!r} — a number from 1 to 65535")
        port = int(port_text)
    return AllowedHost(normalize_host(host), port)


# ------------------------------------------------------------------ resolving and checking


class Resolver(Protocol):
    """Turns a host name into addresses. The guard asks once per connection."""

    async def resolve(self, host: str, port: int) -> list[IPAddress]: ...


class SystemResolver:
    """The operating system's resolver (`getaddrinfo`), run off the event loop."""

    async def resolve(self, host: str, port: int) -> list[IPAddress]:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc.strerror or exc}") from exc
        addresses: list[IPAddress] = []
        for *_, sockaddr in infos:
            # A link-local IPv6 answer carries its zone ("fe80::1%eth0"); the zone is not the address.
            address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
            if address not in addresses:
                addresses.append(address)
        return addresses


class AddressGuard:
    """Decides which addresses a connection may go to: public ones, or any address of an allow-listed
    `HOST[:PORT]` (cloud metadata addresses never)."""

    def __init__(self, allow_hosts: Iterable[str] = (), *, resolver: Resolver | None = None) -> None:
        self.allowed = parse_allow_hosts(allow_hosts)
        self.resolver: Resolver = resolver or SystemResolver()

    def is_allowed(self, host: str, port: int) -> bool:
        """Whether `host:port` is on the allow-list (the host as written in the URL)."""
        key = normalize_host(host)
        return any(entry.matches(key, port) for entry in self.allowed)

    async def check(self, host: str, port: int) -> tuple[IPAddress, ...]:
        """The addresses a connection to `host:port` may use, resolved once (an IP literal is not
        resolved). Raises `AddressRefusedError` when any address is refused: a host whose name answers
        with one public and one private address is refused as a whole."""
        key = normalize_host(host)
        try:
            addresses: Sequence[IPAddress] = [ipaddress.ip_address(key)]
        except ValueError:
            addresses = await self.resolver.resolve(key, port)
        if not addresses:
            raise httpcore.ConnectError(f"{host} resolves to no address")
        allowed = self.is_allowed(key, port)
        for address in addresses:
            why = refusal_reason(address)
            if why is None or (allowed and why != "cloud metadata"):
                continue
            raise AddressRefusedError(
                _refusal_message(host, port, address, why, allowed),
                host=key,
                port=port,
                address=str(address),
                why=why,
            )
        return tuple(addresses)


def _refusal_message(host: str, port: int, address: IPAddress, why: str, allowed: bool) -> str:
    where = f"{host}:{port}"
    what = f"{address} is" if str(address) == normalize_host(host) else f"it resolves to {address},"
    if why == "cloud metadata":
        return (
            f"refused to connect to {where}: {what} a cloud metadata address — openheavy never connects"
            " to one, allow-listed or not"
        )
    hint = (
        ""
        if allowed
        else f" — if you trust it, allow it with --allow-host {AllowedHost(normalize_host(host), port)}"
    )
    return f"refused to connect to {where}: {what} a {why} address{hint}"


# ------------------------------------------------------------------ httpx wiring


class GuardedNetworkBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend with the guard in front: every TCP connection is checked, then made
    to a checked address. TLS and the Host header still use the host name (httpcore passes the URL's
    host as `server_hostname` to `start_tls`)."""

    def __init__(self, guard: AddressGuard, inner: httpcore.AsyncNetworkBackend | None = None) -> None:
        self.guard = guard
        self.inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                addresses = await self.guard.check(host, port)
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(f"resolving {host} took longer than {timeout} s") from exc
        failure: Exception | None = None
        for address in addresses:
            try:
                return await self.inner.connect_tcp(
                    str(address),
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc  # the next checked address may answer
        assert failure is not None
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise AddressRefusedError(
            f"refused to connect to the unix socket {path} — the guard allows TCP only",
            host=path,
            port=0,
            address=path,
            why="unix socket",
        )

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


DEFAULT_LIMITS = httpx.Limits(max_connections=20, max_keepalive_connections=10)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's own transport with its connection pool on a `GuardedNetworkBackend`; no proxies from
    the environment (a proxy would make the connection on our behalf, past the guard)."""

    def __init__(
        self,
        guard: AddressGuard,
        *,
        inner: httpcore.AsyncNetworkBackend | None = None,
        limits: httpx.Limits = DEFAULT_LIMITS,
    ) -> None:
        super().__init__(trust_env=False, limits=limits)
        if not isinstance(getattr(self, "_pool", None), httpcore.AsyncConnectionPool):
            # httpx keeps its pool in `_pool`; if that ever changes, fail here, never run unguarded.
            raise RuntimeError("this httpx version's transport has no _pool to guard — pin httpx 0.28")
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=GuardedNetworkBackend(guard, inner),
        )


def guarded_client(
    guard: AddressGuard,
    *,
    timeout: float = 20.0,
    user_agent: str,
    inner: httpcore.AsyncNetworkBackend | None = None,
) -> httpx.AsyncClient:
    """An httpx client whose every connection passes `guard`. It follows no redirects by itself:
    callers follow them (each hop is a new, checked connection) and count them."""
    return httpx.AsyncClient(
        transport=GuardedTransport(guard, inner=inner),
        timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
        follow_redirects=False,
        trust_env=False,
        headers={"User-Agent": user_agent},
    )
