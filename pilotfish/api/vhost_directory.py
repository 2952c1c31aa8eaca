"""Which virtual host answers a request's host: on-demand virtual hosts over VHDS.

With on-demand virtual hosts a sidecar's route configuration starts without its services'
virtual hosts. When a request's host matches none, Envoy's ``envoy.filters.http.on_demand``
filter holds the request and subscribes over VHDS to ``<route config>/<host>`` (the host as
the request wrote it, port included), an *alias*. The control plane answers with the virtual
host that host belongs to, under that virtual host's own resource name and with the alias in
the resource's ``aliases``; Envoy then routes the request. Measured with Envoy 1.40:

- An answer whose resource has the alias in ``aliases`` but no body (the VHDS protocol's "no
  such virtual host") releases the request, which then finds no route: 404. A removal of the
  alias (``removed_resources``) does not release it.
- Envoy asks for an alias once: after the virtual host it got for it is removed, a request for
  that host finds no route (404) without asking again. The control plane therefore keeps the
  aliases a proxy asked for and sends what they resolve to whenever that changes.
- A route configuration with ``vhds`` serves only after a VHDS response that carries something
  for it; an empty first response leaves the listener waiting for the initial fetch timeout
  (15 s). Translation gives each such route configuration one placeholder virtual host.

A :class:`HostDirectory` answers the question without the virtual hosts themselves: per route
configuration, the resource name of each exact domain, the wildcard domains in Envoy's order
(the longest suffix ``*.example.com`` first, then prefixes ``example.*``), and what a host no
virtual host matches gets: a template of the route configuration's fallback (``allow_any``,
``block_all`` or the egress proxy's), instantiated for that one host, or nothing (404, as
without on-demand virtual hosts when the route configuration has no ``*`` virtual host).
Domains match case-insensitively, as Envoy matches them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from envoy.config.route.v3 import route_components_pb2 as rc


def vhost_resource_name(route_config: str, vhost: str) -> str:
    """A VHDS resource's name: ``<route config>/<virtual host>``, and the name of the virtual
    host it carries. Envoy files a virtual host under the route config named before the
    ``/`` and keys it by its own name, and a removal (``removed_resources``) names the
    resource: with any other virtual host name, Envoy 1.40 keeps a removed virtual host."""
    return f"{route_config}/{vhost}"


@dataclass(frozen=True)
class Resolution:
    """What answers an alias: the resource ``name`` of a virtual host the proxy can be sent,
    with ``vhost`` set when it is a fallback made for this host (its name is ``name``), or
    ``name`` None: no virtual host (the proxy is told so)."""

    name: str | None
    vhost: rc.VirtualHost | None = None


NOT_FOUND = Resolution(None)


class RouteConfigHosts:
    """The hosts of one route configuration: resource name by domain, and its fallback.
    Built once per view and shared (equal only to itself)."""

    __slots__ = ("any_host", "exact", "fallback", "prefixes", "suffixes")

    def __init__(
        self, vhosts: Mapping[str, rc.VirtualHost], fallback: rc.VirtualHost | None
    ) -> None:
        """``vhosts``: the virtual hosts by resource name; ``fallback``: what a host none of
        them matches gets (its name and domains are replaced per host), or None."""
        self.exact: dict[str, str] = {}
        #: (suffix, resource name), longest suffix first; prefixes likewise.
        self.suffixes: list[tuple[str, str]] = []
        self.prefixes: list[tuple[str, str]] = []
        #: The resource name of a virtual host with domain ``*``, if one has it.
        self.any_host: str | None = None
        self.fallback = fallback
        for name, vh in vhosts.items():
            for domain in vh.domains:
                d = domain.lower()
                if d == "*":
                    self.any_host = name
                elif d.startswith("*"):
                    self.suffixes.append((d[1:], name))
                elif d.endswith("*"):
                    self.prefixes.append((d[:-1], name))
                else:
                    self.exact.setdefault(d, name)
        self.suffixes.sort(key=lambda s: -len(s[0]))
        self.prefixes.sort(key=lambda s: -len(s[0]))

    def match(self, host: str) -> str | None:
        """The resource name of the virtual host Envoy would route ``host`` (lower case) to."""
        found = self.exact.get(host)
        if found is not None:
            return found
        for suffix, name in self.suffixes:
            if host.endswith(suffix) and len(host) > len(suffix):
                return name
        for prefix, name in self.prefixes:
            if host.startswith(prefix) and len(host) > len(prefix):
                return name
        return self.any_host


@dataclass(frozen=True)
class HostDirectory:
    """The host -> virtual host resolution of a proxy's VHDS route configurations: its
    route configurations' :class:`RouteConfigHosts` (shared by the proxies of a view)."""

    configs: tuple[tuple[str, RouteConfigHosts], ...] = ()

    def resolve(self, alias: str) -> Resolution:
        """What answers ``alias`` (``<route config>/<host>``, split at the last ``/``: a host
        has none, a route configuration's name may)."""
        route_config, slash, host = alias.rpartition("/")
        hosts = dict(self.configs).get(route_config) if slash else None
        if hosts is None or not host:
            return NOT_FOUND
        host = host.lower()
        name = hosts.match(host)
        if name is not None:
            return Resolution(name)
        if hosts.fallback is None:
            return NOT_FOUND
        own = vhost_resource_name(route_config, host)
        vhost = rc.VirtualHost()
        vhost.CopyFrom(hosts.fallback)
        vhost.name = own
        del vhost.domains[:]
        vhost.domains.append(host)
        return Resolution(own, vhost)


__all__ = ["NOT_FOUND", "HostDirectory", "Resolution", "RouteConfigHosts", "vhost_resource_name"]
