"""Which webhook URLs the platform calls: refusing server-side request forgery (SSRF).

A rollout plan's webhook URL is a tenant's input, and the controller POSTs to it from
inside the operator's network. So by default a URL is refused unless its scheme is http
or https and every address its host resolves to is public (``ipaddress``'s ``is_global``,
and not multicast; an IPv4-mapped IPv6 address is judged as its IPv4 address): loopback,
private, link-local (cloud metadata services), multicast, reserved and other
special-purpose addresses are refused, naming the address and why.

It is checked twice: when a plan is applied (the control service answers 422 naming
``webhooks.N.url``) and again before every call (the controller), after resolving the
host, and the call then connects to the very address checked (``Target.address``; the
host name still goes in ``Host`` and, for https, in TLS SNI and certificate checks). A
host that resolved to a public address when the plan was applied and to an internal one
later (DNS rebinding) is refused at send time.

The operator permits internal receivers with ``LIFTSTREAM_WEBHOOK_ALLOW_HOSTS``: a comma
separated list of host names (exact, case-insensitive; such a host is called whatever it
resolves to) and IP addresses or CIDR networks (``10.1.0.0/16``, ``::1``; an address in
one of them is allowed). ``liftstream up`` allows loopback (its receivers are local).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from urllib.parse import urlsplit

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
#: host, port -> the addresses it resolves to (raises OSError when it does not).
Resolver = Callable[[str, int], list[str]]

ALLOW_ENV = "LIFTSTREAM_WEBHOOK_ALLOW_HOSTS"
RESOLVE_TIMEOUT_S = 3.0
_DEFAULT_PORTS = {"http": 80, "https": 443}
#: Lookups in flight at once: a tenant's slow names must not queue everyone else's.
_RESOLVING = ThreadPoolExecutor(max_workers=32, thread_name_prefix="webhook-dns")


class WebhookRefused(ValueError):
    """The URL may not be called; the message says why."""


def system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


def _special(address: IPAddress) -> str | None:
    """Why ``address`` may not be called by default (None: it is public)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    for kind in ("loopback", "link_local", "multicast", "reserved", "unspecified", "private"):
        if getattr(address, f"is_{kind}"):
            return kind.replace("_", "-")
    return None if address.is_global else "special-purpose (not global)"


@dataclass(frozen=True)
class Target:
    """A URL allowed by the policy; ``address``: the checked address to connect to (None
    for a host the operator allowed by name)."""

    url: str
    host: str
    port: int
    address: str | None


@dataclass(frozen=True)
class WebhookPolicy:
    allowed_hosts: frozenset[str] = frozenset()
    allowed_networks: tuple[IPNetwork, ...] = ()
    resolver: Resolver = field(default=system_resolver, compare=False)
    resolve_timeout_s: float = RESOLVE_TIMEOUT_S

    @classmethod
    def parse(cls, text: str, resolver: Resolver = system_resolver) -> WebhookPolicy:
        """``text`` (``LIFTSTREAM_WEBHOOK_ALLOW_HOSTS``); ValueError naming a bad entry."""
        hosts: set[str] = set()
        networks: list[IPNetwork] = []
        for entry in filter(None, (part.strip() for part in text.split(","))):
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
                continue
            except ValueError:
                pass
            name = entry.lower().rstrip(".")
            if not name or "/" in name or any(c.isspace() or c in ":@?#" for c in name):
                raise ValueError(f"'{entry}' is neither a host name nor an address or network")
            hosts.add(name)
        return cls(frozenset(hosts), tuple(networks), resolver)

    def check(self, url: str) -> Target:
        """The URL's target, or ``WebhookRefused`` saying why it may not be called."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as error:
            raise WebhookRefused(f"is not a valid URL: {error}") from None
        scheme = parts.scheme.lower()
        if scheme not in _DEFAULT_PORTS:
            raise WebhookRefused(f"scheme '{scheme}' is refused: only http and https")
        host = (parts.hostname or "").rstrip(".")
        if not host:
            raise WebhookRefused("has no host")
        port = port or _DEFAULT_PORTS[scheme]
        if host in self.allowed_hosts:
            return Target(url, host, port, None)
        try:
            addresses = [str(ipaddress.ip_address(host))]
            literal = True
        except ValueError:
            addresses, literal = self._resolve(host, port), False
        for text in addresses:
            address = ipaddress.ip_address(text.split("%", 1)[0])
            if any(address in network for network in self.allowed_networks):
                continue
            why = _special(address)
            if why is not None:
                shown = host if literal else f"{host} resolves to {text}, which"
                raise WebhookRefused(
                    f"{shown} is a {why} address: refused (the operator can allow it with "
                    f"{ALLOW_ENV})"
                )
        return Target(url, host, port, addresses[0])

    def _resolve(self, host: str, port: int) -> list[str]:
        job = _RESOLVING.submit(self.resolver, host, port)
        try:
            addresses = job.result(timeout=self.resolve_timeout_s)
        except FutureTimeout:
            raise WebhookRefused(
                f"host {host} did not resolve within {self.resolve_timeout_s:g} s"
            ) from None
        except OSError as error:
            raise WebhookRefused(f"host {host} does not resolve: {error}") from None
        if not addresses:
            raise WebhookRefused(f"host {host} resolves to no address")
        return addresses


def webhook_policy(text: str | None = None) -> WebhookPolicy:
    """The policy of ``LIFTSTREAM_WEBHOOK_ALLOW_HOSTS`` (or ``text``)."""
    if text is None:
        from services.settings import ServiceSettings, load

        text = load(ServiceSettings).webhook_allow_hosts
    return WebhookPolicy.parse(text)
