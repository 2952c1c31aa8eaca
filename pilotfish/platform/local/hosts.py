"""Service names inside a pod: its own ``/etc/hosts`` and ``/etc/resolv.conf``.

``ip netns exec NS`` bind-mounts every file of ``/etc/netns/NS/`` over the file of the same name
in ``/etc`` for the process it starts, so a pod's processes read ``/etc/netns/NS/hosts`` as
``/etc/hosts``. (Processes that join a namespace with ``setns``/``nsenter`` do not get this.)

The hosts file lists ``localhost``, the pod's own name, and for every service with a VIP::

    10.96.0.12  reviews reviews.default reviews.default.svc reviews.default.svc.cluster.local

where the short name appears only for services in the pod's own namespace (as Kubernetes DNS
search paths would resolve it). The resolv.conf sets the same search path and no reachable
name server, so a name that is not in the hosts file fails at once inside the pod rather than
leaking a query to the host's resolver.

Files are rewritten IN PLACE (same inode): a bind mount pins the inode, so a replaced file
(``mv``, ``sed -i``) would never be seen by processes already running. :func:`render_hosts` and
:func:`render_resolv_conf` are pure; :func:`write_pod_dns` is the I/O edge.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pilotfish.api.mesh import DEFAULT_DOMAIN_SUFFIX, visible

__all__ = [
    "ETC_NETNS",
    "EntryName",
    "ServiceName",
    "pod_etc_dir",
    "remove_pod_dns",
    "render_hosts",
    "render_resolv_conf",
    "service_hostnames",
    "write_in_place",
    "write_pod_dns",
]

#: Where ``ip netns exec`` looks for per-namespace files (fixed by iproute2).
ETC_NETNS = Path("/etc/netns")


@dataclass(frozen=True)
class ServiceName:
    """A service that has a VIP: ``name`` in ``namespace`` at ``vip``."""

    name: str
    namespace: str
    vip: str


@dataclass(frozen=True)
class EntryName:
    """A ServiceEntry host and its address (``spec.addresses[0]`` or the VIP the control
    plane allocated, ``status.addresses``), seen from the namespaces its ``exportTo`` names."""

    host: str
    vip: str
    namespace: str
    export_to: tuple[str, ...] = ("*",)


def service_hostnames(
    svc: ServiceName, pod_namespace: str, domain_suffix: str = DEFAULT_DOMAIN_SUFFIX
) -> list[str]:
    """The names a pod in ``pod_namespace`` uses for ``svc``, shortest first. Pure."""
    names = [] if svc.namespace != pod_namespace else [svc.name]
    base = f"{svc.name}.{svc.namespace}"
    names += [base, f"{base}.svc", f"{base}.svc.{domain_suffix}"]
    return names


def render_hosts(
    pod_name: str,
    pod_ip: str,
    pod_namespace: str,
    services: Iterable[ServiceName],
    domain_suffix: str = DEFAULT_DOMAIN_SUFFIX,
    entries: Iterable[EntryName] = (),
    aliases: Iterable[tuple[str, Sequence[str]]] = (),
) -> str:
    """The pod's ``/etc/hosts``. Deterministic: services sorted by namespace and name. Pure.

    ``entries``: ServiceEntry hosts visible from the pod's namespace are listed with their
    VIPs, as Istio's DNS proxy answers them with auto-allocated addresses (the sidecar
    captures the VIP). ``aliases``: the pod's ``hostAliases`` (ip, hostnames), as the
    kubelet writes them."""
    ipaddress.ip_address(pod_ip)
    lines = [
        "# Managed by Pilotfish; rewritten whenever services change.",
        "127.0.0.1\tlocalhost",
        "::1\tlocalhost ip6-localhost ip6-loopback",
        f"{pod_ip}\t{pod_name}",
    ]
    for ip, hostnames in aliases:
        alias = " ".join(str(h) for h in hostnames)
        if alias:
            ipaddress.ip_address(ip)
            lines.append(f"{ip}\t{alias}")
    by_vip: dict[str, list[str]] = {}
    for svc in sorted(set(services), key=lambda s: (s.namespace, s.name)):
        try:
            ipaddress.ip_address(svc.vip)
        except ValueError as exc:
            raise ValueError(
                f"Service {svc.namespace}/{svc.name}: VIP {svc.vip!r} is not an IP address"
            ) from exc
        names = by_vip.setdefault(svc.vip, [])
        for name in service_hostnames(svc, pod_namespace, domain_suffix):
            if name not in names:
                names.append(name)
    for e in sorted(set(entries), key=lambda e: (e.host, e.namespace)):
        if not visible(e.export_to, e.namespace, pod_namespace):
            continue
        if not any(e.host in listed for listed in by_vip.values()):
            by_vip.setdefault(e.vip, []).append(e.host)
    for vip, names in by_vip.items():
        if names:
            lines.append(f"{vip}\t{' '.join(names)}")
    return "\n".join(lines) + "\n"


def render_resolv_conf(
    pod_namespace: str,
    domain_suffix: str = DEFAULT_DOMAIN_SUFFIX,
    dns_config: Mapping[str, Any] | None = None,
    dns_policy: str | None = None,
) -> str:
    """The pod's ``/etc/resolv.conf``: Kubernetes' search path, a loopback name server. Pure.

    Nothing listens on the pod's ``127.0.0.1:53``, so names missing from the hosts file fail
    fast and no DNS query leaves the pod. A pod's ``dnsConfig`` (``nameservers``,
    ``searches``, ``options``) is merged as the kubelet does: with ``dnsPolicy: None`` it is
    the whole file, otherwise its name servers and searches are appended.
    """
    cfg = dns_config or {}
    servers = [str(s) for s in cfg.get("nameservers") or []]
    searches = [str(s) for s in cfg.get("searches") or []]
    options = [
        f"{o['name']}:{o['value']}" if o.get("value") is not None else str(o["name"])
        for o in cfg.get("options") or []
        if isinstance(o, Mapping) and o.get("name")
    ]
    if dns_policy == "None":
        base_search: list[str] = []
        base_servers: list[str] = []
        base_options: list[str] = []
    else:
        base_search = [
            f"{pod_namespace}.svc.{domain_suffix}",
            f"svc.{domain_suffix}",
            domain_suffix,
        ]
        base_servers = ["127.0.0.1"]
        base_options = ["ndots:5"]
    lines = ["# Managed by Pilotfish."]
    merged = [*base_servers, *(s for s in servers if s not in base_servers)]
    lines += [f"nameserver {s}" for s in merged[:3]]
    search = [*base_search, *(s for s in searches if s not in base_search)]
    if search:
        lines.append(f"search {' '.join(search)}")
    given = {o.split(":")[0] for o in options}
    opts = [o for o in base_options if o.split(":")[0] not in given] + options
    if opts:
        lines.append(f"options {' '.join(opts)}")
    return "\n".join(lines) + "\n"


def pod_etc_dir(netns: str, root: Path = ETC_NETNS) -> Path:
    """``/etc/netns/<netns>``: the directory ``ip netns exec`` bind-mounts from."""
    if not netns or "/" in netns or netns in (".", ".."):
        raise ValueError(f"{netns!r} is not a network namespace name")
    return root / netns


def write_in_place(path: Path, text: str, mode: int = 0o644) -> None:
    """Write ``text`` to ``path`` keeping its inode (truncate and write, never replace)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o755)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)
        data = text.encode()
        while data:
            written = os.write(fd, data)
            data = data[written:]
    finally:
        os.close(fd)


def write_pod_dns(
    netns: str, hosts: str, resolv_conf: str | None = None, root: Path = ETC_NETNS
) -> Path:
    """Write the pod's hosts (and resolv.conf) in place; returns the pod's etc directory."""
    directory = pod_etc_dir(netns, root)
    write_in_place(directory / "hosts", hosts)
    if resolv_conf is not None:
        write_in_place(directory / "resolv.conf", resolv_conf)
    return directory


def remove_pod_dns(netns: str, root: Path = ETC_NETNS) -> None:
    """Remove ``/etc/netns/<netns>`` (no-op if absent)."""
    shutil.rmtree(pod_etc_dir(netns, root), ignore_errors=True)
