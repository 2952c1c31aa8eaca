"""Pods as network namespaces on one Linux bridge: addresses, links, routes, host rules, cleanup.

Topology (defaults; every name derives from :attr:`PodNetworkSettings.prefix`)::

    host namespace                                    pod namespace "pf-<pod_id>"
    bridge pf0  10.244.0.1/16  ── veth pf-0002 ──────── eth0 10.244.0.2/16 (MAC 0a:58:0a:f4:00:02)
                               ── veth pf-0003 ── ...   lo up
    filter FORWARD -> PF-FORWARD (accept in/out of pf0) default via 10.244.0.1
    net.ipv4.ip_forward = 1                             10.96.0.0/16 dev eth0 (service VIPs)

- Each pod gets the lowest free address of the pod range (its previous one when it is free
  again), and a MAC derived from that address, so an address reused by a new pod keeps the MAC
  other pods have cached (no stale ARP after a restart).
- The service VIP range is routed on-link through ``eth0``: ``connect()`` to a VIP then reaches
  the pod's own ``nat OUTPUT`` rules (capture or :mod:`service_lb`), and a VIP nothing
  translates stays on the bridge instead of leaving the host.
- Pod-to-pod traffic is bridged; when ``br_netfilter`` is loaded it crosses the host's
  ``FORWARD`` chain, so a mesh-owned chain accepts everything in and out of the bridge.
- While the mesh is up, the pod and service ranges have ``unreachable`` routes in the host
  namespace (metric :data:`FAIL_CLOSED_METRIC`, below the bridge's own route): if the bridge
  disappears, traffic to pod addresses fails on the host instead of leaving through its
  default route. They go with the rest in :func:`cleanup_all`.
- Every host object carries the prefix (netns ``pf-*``, veths ``pf-XXXX``, bridge ``pf0``,
  chain ``PF-FORWARD``) and a marker (link alias / rule comment ``pilotfish:pf``), which is how
  :func:`cleanup_all` finds leftovers of a crashed runtime. Different prefixes never touch each
  other's objects, so several runtimes (or parallel tests) can share one host.

Pure functions build ``ip -batch`` lines and ``iptables-restore`` scripts; :class:`PodNetwork`
and :func:`cleanup_all` run them (root required).
"""

from __future__ import annotations

import ipaddress
import json
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pilotfish.platform.local.commands import IptablesTools, PlatformError, run
from pilotfish.platform.local.hosts import ETC_NETNS, remove_pod_dns
from pilotfish.platform.local.process import kill_netns_processes

__all__ = [
    "CleanupReport",
    "IpAllocator",
    "PodNet",
    "PodNetwork",
    "PodNetworkSettings",
    "cleanup_all",
    "fail_closed_batch",
    "forward_rules",
    "host_cleanup_rules",
    "links_to_delete",
    "mac_for",
    "parse_netns_list",
    "pod_inner_batch",
    "pod_outer_batch",
]

#: Metric of the fail-closed ``unreachable`` routes (the bridge's connected route has 0).
FAIL_CLOSED_METRIC = 4242

_PREFIX_RE = re.compile(r"^[a-z][a-z0-9]{0,7}$")
_POD_ID_RE = re.compile(r"^[a-z0-9]([a-z0-9.-]{0,198}[a-z0-9])?$")
IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")


@dataclass(frozen=True)
class PodNetworkSettings:
    """Names and ranges of one pod network. ``prefix``: 1-8 lowercase letters/digits."""

    prefix: str = "pf"
    #: Bridge name; empty means ``<prefix>0``. Must start with the prefix (max 15 characters).
    bridge: str = ""
    pod_cidr: str = "10.244.0.0/16"
    #: Bridge (gateway) address; empty means the first host address of ``pod_cidr``.
    gateway: str = ""
    service_cidr: str = "10.96.0.0/16"
    enable_ip_forward: bool = True
    #: Only for tests of the pure parts: ``ip netns exec`` always reads ``/etc/netns``.
    etc_netns: Path = ETC_NETNS

    def __post_init__(self) -> None:
        if not _PREFIX_RE.match(self.prefix):
            raise ValueError(f"prefix {self.prefix!r}: 1-8 lowercase letters or digits")
        br = self.bridge_name
        if not br.startswith(self.prefix) or len(br) > 15 or br.startswith(f"{self.prefix}-"):
            raise ValueError(
                f"bridge {br!r}: must start with the prefix {self.prefix!r}, not with "
                f"{self.prefix + '-'!r} (veth names), and have at most 15 characters"
            )
        net = self.network
        if net.prefixlen < 16 or net.prefixlen > 29:
            raise ValueError(f"pod_cidr {self.pod_cidr}: prefix length must be /16 to /29")
        if self.gateway_ip not in net or self.gateway_ip in (
            net.network_address,
            net.broadcast_address,
        ):
            raise ValueError(f"gateway {self.gateway_ip} is not a host address of {net}")
        svc = self.service_network
        if svc.overlaps(net):
            raise ValueError(f"service_cidr {svc} overlaps pod_cidr {net}")

    @property
    def bridge_name(self) -> str:
        return self.bridge or f"{self.prefix}0"

    @property
    def network(self) -> ipaddress.IPv4Network:
        return _v4net(self.pod_cidr, "pod_cidr")

    @property
    def service_network(self) -> ipaddress.IPv4Network:
        return _v4net(self.service_cidr, "service_cidr")

    @property
    def gateway_ip(self) -> ipaddress.IPv4Address:
        if self.gateway:
            addr = ipaddress.ip_address(self.gateway)
            if not isinstance(addr, ipaddress.IPv4Address):
                raise ValueError(f"gateway {self.gateway}: only IPv4 is supported")
            return addr
        return self.network.network_address + 1

    @property
    def marker(self) -> str:
        """Link alias and rule comment on every host object of this network."""
        return f"pilotfish:{self.prefix}"

    @property
    def forward_chain(self) -> str:
        return f"{self.prefix.upper()}-FORWARD"

    def netns_name(self, pod_id: str) -> str:
        if not _POD_ID_RE.match(pod_id):
            raise ValueError(
                f"pod id {pod_id!r}: lowercase letters, digits, '.' and '-' (max 200 characters)"
            )
        return f"{self.prefix}-{pod_id}"

    def veth_name(self, ip: ipaddress.IPv4Address) -> str:
        offset = int(ip) - int(self.network.network_address)
        return f"{self.prefix}-{offset:04x}"

    def veth_pattern(self) -> re.Pattern[str]:
        return re.compile(rf"^{re.escape(self.prefix)}-[0-9a-f]{{4}}$")


def _v4net(cidr: str, what: str) -> ipaddress.IPv4Network:
    try:
        net = ipaddress.ip_network(cidr, strict=True)
    except ValueError as exc:
        raise ValueError(f"{what} {cidr!r}: {exc}") from exc
    if not isinstance(net, ipaddress.IPv4Network):
        raise ValueError(f"{what} {cidr!r}: only IPv4 is supported")
    return net


def mac_for(ip: ipaddress.IPv4Address) -> str:
    """A locally administered MAC derived from the address (``0a:58:`` + the four octets). Pure."""
    return "0a:58:" + ":".join(f"{b:02x}" for b in ip.packed)


@dataclass(frozen=True)
class PodNet:
    """A pod's network: namespace name, address, host-side veth."""

    name: str
    ip: str
    veth_host: str
    pod_id: str = ""
    gateway: str = ""
    prefix_len: int = 0


class IpAllocator:
    """Pod addresses in one range. Stable per pod id; released addresses are reused. Not I/O."""

    def __init__(
        self, network: ipaddress.IPv4Network, reserved: Sequence[ipaddress.IPv4Address] = ()
    ) -> None:
        self._network = network
        self._reserved = {network.network_address, network.broadcast_address, *reserved}
        self._by_pod: dict[str, ipaddress.IPv4Address] = {}
        self._previous: dict[str, ipaddress.IPv4Address] = {}

    def allocate(self, pod_id: str) -> ipaddress.IPv4Address:
        """The pod's address: its current one, else its previous one if free, else the lowest."""
        if pod_id in self._by_pod:
            return self._by_pod[pod_id]
        used = set(self._by_pod.values()) | self._reserved
        prev = self._previous.get(pod_id)
        if prev is not None and prev not in used:
            self._by_pod[pod_id] = prev
            return prev
        for ip in self._network.hosts():
            if ip not in used:
                self._by_pod[pod_id] = ip
                return ip
        raise PlatformError(f"pod {pod_id}: no free address left in {self._network}")

    def reserve(self, pod_id: str, ip: ipaddress.IPv4Address) -> None:
        """Record an address already in use (e.g. found on a running pod)."""
        if ip not in self._network or ip in self._reserved:
            raise ValueError(f"{ip} is not a pod address of {self._network}")
        owner = self.owner(ip)
        if owner is not None and owner != pod_id:
            raise ValueError(f"{ip} is already allocated to pod {owner}")
        self._by_pod[pod_id] = ip

    def release(self, pod_id: str) -> None:
        ip = self._by_pod.pop(pod_id, None)
        if ip is not None:
            self._previous[pod_id] = ip

    def owner(self, ip: ipaddress.IPv4Address) -> str | None:
        return next((p for p, a in self._by_pod.items() if a == ip), None)

    def allocated(self) -> dict[str, ipaddress.IPv4Address]:
        return dict(self._by_pod)


# ---------------------------------------------------------------- pure command builders


def bridge_batch(s: PodNetworkSettings, exists: bool) -> list[str]:
    """``ip -batch`` lines that create (if missing) and configure the bridge. Pure."""
    br = s.bridge_name
    lines = [] if exists else [f"link add {br} type bridge"]
    return [
        *lines,
        f"link set {br} alias {s.marker}",
        f"link set {br} address {mac_for(s.gateway_ip)}",
        f"addr replace {s.gateway_ip}/{s.network.prefixlen} dev {br}",
        f"link set {br} up",
    ]


def fail_closed_batch(s: PodNetworkSettings, add: bool) -> list[str]:
    """``ip -batch`` lines adding (or deleting) the ranges' unreachable routes. Pure."""
    verb = "replace" if add else "del"
    return [
        f"route {verb} unreachable {net} metric {FAIL_CLOSED_METRIC}"
        for net in (s.network, s.service_network)
    ]


def pod_outer_batch(s: PodNetworkSettings, netns: str, veth: str) -> list[str]:
    """Host-side ``ip -batch`` lines for one pod: namespace, veth pair, bridge port. Pure."""
    return [
        f"netns add {netns}",
        f"link add {veth} type veth peer name eth0 netns {netns}",
        f"link set {veth} alias {s.marker}",
        f"link set {veth} master {s.bridge_name}",
        f"link set {veth} up",
    ]


def pod_inner_batch(s: PodNetworkSettings, ip: ipaddress.IPv4Address) -> list[str]:
    """Pod-side ``ip -batch`` lines (run with ``ip -n NETNS``): lo, eth0, routes. Pure.

    eth0 is up before it has its address, so a route to the pod's subnet exists only once the
    pod can use it (an agent started before these lines waits for that route)."""
    return [
        "link set lo up",
        f"link set eth0 address {mac_for(ip)}",
        "link set eth0 up",
        f"addr add {ip}/{s.network.prefixlen} dev eth0",
        f"route add default via {s.gateway_ip} dev eth0",
        f"route add {s.service_network} dev eth0 scope link",
    ]


def forward_rules(s: PodNetworkSettings, add_jump: bool) -> str:
    """``iptables-restore --noflush`` script for the host ``filter`` table. Pure.

    Declaring the chain flushes it, so the script is idempotent; the ``FORWARD`` jump is added
    only when ``add_jump`` (it is not there yet).
    """
    ch, br, mark = s.forward_chain, s.bridge_name, s.marker
    lines = [
        "*filter",
        f":{ch} - [0:0]",
        f'-A {ch} -i {br} -m comment --comment "{mark}" -j ACCEPT',
        f'-A {ch} -o {br} -m comment --comment "{mark}" -j ACCEPT',
    ]
    if add_jump:
        lines.append(f'-I FORWARD 1 -m comment --comment "{mark}" -j {ch}')
    return "\n".join([*lines, "COMMIT"]) + "\n"


def _save_tables(save: str) -> dict[str, list[str]]:
    tables: dict[str, list[str]] = {}
    current: list[str] = []
    for line in save.splitlines():
        if line.startswith("*"):
            current = tables.setdefault(line[1:].strip(), [])
        elif line and not line.startswith("#") and line != "COMMIT":
            current.append(line)
    return tables


def _is_marked(rule: str, s: PodNetworkSettings) -> bool:
    return f'--comment "{s.marker}"' in rule or f"--comment {s.marker} " in f"{rule} "


def has_forward_jump(save: str, s: PodNetworkSettings) -> bool:
    """Whether the host ``FORWARD`` chain already jumps to the mesh chain. Pure."""
    rules = _save_tables(save).get("filter", [])
    return any(r.startswith("-A FORWARD ") and r.endswith(f"-j {s.forward_chain}") for r in rules)


def host_cleanup_rules(save: str, s: PodNetworkSettings) -> str:
    """``iptables-restore --noflush`` script removing every rule and chain of this network. Pure.

    Works on the output of ``iptables-save`` (all tables): marked rules in built-in chains are
    deleted, the mesh chain is flushed and removed. Empty when there is nothing to remove.
    """
    out: list[str] = []
    for table, rules in _save_tables(save).items():
        chains = [r[1:].split()[0] for r in rules if r.startswith(":")]
        ours = [c for c in chains if c == s.forward_chain]
        deletes = [
            "-D " + r[3:]
            for r in rules
            if r.startswith("-A ")
            and r.split()[1] not in ours
            and (_is_marked(r, s) or any(r.endswith(f"-j {c}") for c in ours))
        ]
        if not deletes and not ours:
            continue
        out += [f"*{table}", *deletes]
        for c in ours:
            out += [f"-F {c}", f"-X {c}"]
        out.append("COMMIT")
    return "\n".join(out) + "\n" if out else ""


def parse_netns_list(text: str) -> list[str]:
    """Names from ``ip netns list`` (lines like ``pf-a (id: 3)``). Pure."""
    return [line.split()[0] for line in text.splitlines() if line.strip()]


def links_to_delete(links: list[dict[str, Any]], s: PodNetworkSettings) -> list[str]:
    """Links of this network in ``ip -j -d link show`` output: veths first, bridge last. Pure."""
    veths: list[str] = []
    bridges: list[str] = []
    pattern = s.veth_pattern()
    for link in links:
        name = str(link.get("ifname", ""))
        kind = str((link.get("linkinfo") or {}).get("info_kind", ""))
        marked = link.get("ifalias") == s.marker
        if name == s.bridge_name and (kind == "bridge" or marked):
            bridges.append(name)
        elif marked or (kind == "veth" and pattern.match(name)):
            (bridges if kind == "bridge" else veths).append(name)
    return veths + bridges


# ---------------------------------------------------------------- I/O


def _ip_batch(lines: Sequence[str], netns: str | None = None) -> None:
    argv = ["ip", *(["-n", netns] if netns else []), "-batch", "-"]
    run(argv, stdin="\n".join(lines) + "\n")


def _restore(tools: IptablesTools, script: str, attempts: int = 5) -> None:
    """Host-level ``iptables-restore --noflush``, retried when another writer raced us."""
    for attempt in range(attempts):
        try:
            run([tools.restore, "--noflush"], stdin=script)
            return
        except PlatformError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.05 * (attempt + 1))


#: Where ``ip netns add`` puts a namespace, and the host's network interfaces.
NETNS_DIR = Path("/run/netns")
SYS_NET = Path("/sys/class/net")


def _link_exists(name: str) -> bool:
    return run(["ip", "link", "show", "dev", name], check=False).returncode == 0


def _list_netns() -> list[str]:
    return parse_netns_list(run(["ip", "netns", "list"]).stdout)


@dataclass
class CleanupReport:
    """What :func:`cleanup_all` removed."""

    namespaces: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    rules_removed: bool = False
    killed_pids: list[int] = field(default_factory=list)
    routes: list[str] = field(default_factory=list)


class PodNetwork:
    """One bridge and its pods. Call :meth:`setup` once, then create/delete pods.

    Thread-safe for concurrent :meth:`create_pod_netns`/:meth:`delete_pod_netns` calls.
    """

    def __init__(
        self, settings: PodNetworkSettings | None = None, tools: IptablesTools | None = None
    ) -> None:
        self.settings = settings or PodNetworkSettings()
        self.tools = tools or IptablesTools.default()
        self.allocator = IpAllocator(self.settings.network, [self.settings.gateway_ip])
        self._pods: dict[str, PodNet] = {}
        #: Pods whose namespace has no address and routes yet (see ``begin_pod_netns``).
        self._unfinished: set[str] = set()
        self._lock = threading.Lock()

    # host side ---------------------------------------------------------

    def setup(self) -> None:
        """Create/repair the bridge, forwarding and the FORWARD accept rules. Idempotent."""
        s = self.settings
        _ip_batch(fail_closed_batch(s, add=True))
        _ip_batch(bridge_batch(s, exists=_link_exists(s.bridge_name)))
        if s.enable_ip_forward and IP_FORWARD.read_text().strip() != "1":
            IP_FORWARD.write_text("1\n")
        save = run([self.tools.save, "-t", "filter"]).stdout
        _restore(self.tools, forward_rules(s, add_jump=not has_forward_jump(save, s)))

    def teardown(self) -> CleanupReport:
        """Delete every pod of this network and every host object (same as :func:`cleanup_all`)."""
        with self._lock:
            report = cleanup_all(self.settings, self.tools)
            for pod_id in list(self._pods):
                self.allocator.release(pod_id)
            self._pods.clear()
            return report

    # pods ----------------------------------------------------------------

    def pods(self) -> dict[str, PodNet]:
        with self._lock:
            return dict(self._pods)

    def create_pod_netns(self, pod_id: str) -> PodNet:
        """Create the pod's namespace, veth, address and routes; returns what was made.

        Calling it again for a live pod returns the same :class:`PodNet`.
        """
        pod = self.begin_pod_netns(pod_id)
        self.finish_pod_netns(pod_id)
        return pod

    def begin_pod_netns(self, pod_id: str) -> PodNet:
        """Create the pod's namespace and veth (host side up, in the bridge); its address and
        routes come with :meth:`finish_pod_netns`. Processes may enter the namespace from now
        on (a sidecar agent starts while the rest is made). Calling it again for a live pod
        returns the same :class:`PodNet`."""
        s = self.settings
        netns = s.netns_name(pod_id)
        with self._lock:
            if pod_id in self._pods:
                return self._pods[pod_id]
            # What ``ip netns list`` reads, without starting it (pod start-up is timed).
            if (NETNS_DIR / netns).exists():
                raise PlatformError(
                    f"pod {pod_id}: network namespace {netns} already exists "
                    "(left by an earlier run? cleanup_all removes it)"
                )
            ip = self.allocator.allocate(pod_id)
            veth = s.veth_name(ip)
            pod = PodNet(
                name=netns,
                ip=str(ip),
                veth_host=veth,
                pod_id=pod_id,
                gateway=str(s.gateway_ip),
                prefix_len=s.network.prefixlen,
            )
            try:
                if (SYS_NET / veth).exists():  # a stale veth of a crashed run
                    run(["ip", "link", "del", veth], check=False)
                _ip_batch(pod_outer_batch(s, netns, veth))
            except BaseException:
                self._remove(netns, veth)
                self.allocator.release(pod_id)
                raise
            self._pods[pod_id] = pod
            self._unfinished.add(pod_id)
            return pod

    def finish_pod_netns(self, pod_id: str) -> None:
        """The pod's loopback, address and routes (after :meth:`begin_pod_netns`; once)."""
        with self._lock:
            pod = self._pods.get(pod_id)
            if pod is None or pod_id not in self._unfinished:
                return
        try:
            _ip_batch(pod_inner_batch(self.settings, ipaddress.IPv4Address(pod.ip)), netns=pod.name)
        except BaseException:
            with self._lock:
                self._pods.pop(pod_id, None)
                self._unfinished.discard(pod_id)
                self._remove(pod.name, pod.veth_host)
                self.allocator.release(pod_id)
            raise
        with self._lock:
            self._unfinished.discard(pod_id)

    def delete_pod_netns(self, pod_id: str, kill_grace: float = 2.0) -> None:
        """Kill what still runs in the pod, delete its veth, namespace and etc dir. Idempotent."""
        s = self.settings
        netns = s.netns_name(pod_id)
        with self._lock:
            pod = self._pods.pop(pod_id, None)
            self._unfinished.discard(pod_id)
            ip = self.allocator.allocated().get(pod_id)
            veth = pod.veth_host if pod else (s.veth_name(ip) if ip else None)
            kill_netns_processes(netns, kill_grace)
            self._remove(netns, veth)
            self.allocator.release(pod_id)

    def _remove(self, netns: str, veth: str | None) -> None:
        # The host-side veth first: deleting a namespace frees its veth only later.
        if veth is not None:
            run(["ip", "link", "del", veth], check=False)
        run(["ip", "netns", "del", netns], check=False)
        remove_pod_dns(netns, self.settings.etc_netns)


def cleanup_all(
    settings: PodNetworkSettings, tools: IptablesTools | None = None, kill_grace: float = 2.0
) -> CleanupReport:
    """Remove everything a pod network with this prefix created, running or crashed. Idempotent.

    Kills processes left in ``<prefix>-*`` namespaces, deletes those namespaces, the marked
    veths and the bridge, the mesh's FORWARD chain and its jump, and ``/etc/netns/<prefix>-*``.
    """
    tools = tools or IptablesTools.default()
    s = settings
    report = CleanupReport()
    for netns in _list_netns():
        if netns.startswith(f"{s.prefix}-"):
            report.killed_pids += kill_netns_processes(netns, kill_grace)
            run(["ip", "netns", "del", netns], check=False)
            report.namespaces.append(netns)
    links = json.loads(run(["ip", "-j", "-d", "link", "show"]).stdout or "[]")
    for name in links_to_delete(links, s):
        if run(["ip", "link", "del", name], check=False).returncode == 0:
            report.links.append(name)
    script = host_cleanup_rules(run([tools.save]).stdout, s)
    if script:
        _restore(tools, script)
        report.rules_removed = True
    for line in fail_closed_batch(s, add=False):
        if run(["ip", *line.split()], check=False).returncode == 0:
            report.routes.append(line.split(" ", 2)[2])
    if s.etc_netns.is_dir():
        for entry in s.etc_netns.iterdir():
            if entry.name.startswith(f"{s.prefix}-"):
                remove_pod_dns(entry.name, s.etc_netns)
    return report
