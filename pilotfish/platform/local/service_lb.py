"""kube-proxy style service VIPs for pods that have no sidecar.

A pod without an Envoy still has to reach ``reviews:9080``: its hosts file maps the name to the
service VIP, and ``nat`` rules in its own network namespace pick one ready endpoint per new
connection, the way kube-proxy's iptables mode does::

    nat    OUTPUT -p tcp -> PF_SERVICES
           PF_SERVICES -d VIP -p tcp --dport 9080 -m statistic --mode random --probability 0.5
                       -j DNAT --to-destination 10.244.0.7:9080
           PF_SERVICES -d VIP -p tcp --dport 9080 -j DNAT --to-destination 10.244.0.8:9080
    filter OUTPUT -> PF_SERVICES_REJECT
           PF_SERVICES_REJECT -d VIP -p tcp --dport 9080 -j REJECT   (service without endpoints)

With ``n`` endpoints, rule ``i`` matches with probability ``1/(n-i)`` so each endpoint gets
``1/n`` of the connections. The reject rules sit in the ``filter`` table, which sees packets after
``nat`` has rewritten them, so only connections to a VIP that nothing translated are refused at
once instead of waiting for an ARP answer that never comes.

Pods WITH a sidecar never get these rules: their Envoy balances, and the capture rules of
:mod:`pilotfish.platform.local.capture` send VIP connections to it (the VIP range still needs the
route that :mod:`pilotfish.platform.local.network` installs, so that ``connect()`` reaches
iptables at all).

:func:`service_lb_rules` is pure. :func:`apply_service_lb` replaces the whole set atomically with
``iptables-restore --noflush`` (declaring a chain flushes it; the ``OUTPUT`` jumps are added only
when missing), so it can be called on every endpoint change.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from pilotfish.platform.local.commands import IptablesTools, PlatformError, in_netns, run

__all__ = [
    "NAT_CHAIN",
    "REJECT_CHAIN",
    "Endpoint",
    "ServicePort",
    "apply_service_lb",
    "has_capture",
    "installed_jumps",
    "remove_service_lb",
    "service_lb_rules",
]

NAT_CHAIN = "PF_SERVICES"
REJECT_CHAIN = "PF_SERVICES_REJECT"

Protocol = Literal["tcp", "udp"]


@dataclass(frozen=True, order=True)
class Endpoint:
    """One ready backend: pod IP and target port."""

    ip: str
    port: int


@dataclass(frozen=True)
class ServicePort:
    """One service port on a VIP and its ready endpoints.

    ``name`` is only a label for the rule comments (``default/reviews:http``).
    """

    name: str
    vip: str
    port: int
    endpoints: tuple[Endpoint, ...] = ()
    protocol: Protocol = "tcp"

    def __post_init__(self) -> None:
        for ip in (self.vip, *(e.ip for e in self.endpoints)):
            try:
                addr = ipaddress.ip_address(ip)
            except ValueError as exc:
                raise ValueError(f"service {self.name}: {ip!r} is not an IP address") from exc
            if addr.version != 4:
                raise ValueError(f"service {self.name}: {ip!r}: only IPv4 is supported")
        for port in (self.port, *(e.port for e in self.endpoints)):
            if not 0 < port < 65536:
                raise ValueError(f"service {self.name}: port {port} is out of range 1-65535")
        if self.protocol not in ("tcp", "udp"):
            raise ValueError(f"service {self.name}: protocol {self.protocol!r} is not tcp or udp")


def _comment(text: str) -> str:
    safe = "".join(c if c.isalnum() or c in " -_./:" else "_" for c in text)[:240]
    return f'-m comment --comment "{safe}"'


def _probability(index: int, count: int) -> str:
    return f"{1.0 / (count - index):0.10f}"


def service_lb_rules(
    services: Iterable[ServicePort],
    *,
    add_nat_jump: bool = True,
    add_filter_jump: bool = True,
) -> str:
    """The ``iptables-restore --noflush`` script for these services (``nat`` and ``filter``). Pure.

    Output is deterministic: services are sorted by VIP, port and protocol, endpoints by address,
    duplicates dropped. The ``add_*_jump`` flags add the ``OUTPUT`` jumps; pass ``False`` for a
    jump that is already installed (see :func:`installed_jumps`).
    """
    ordered = sorted(
        {(s.vip, s.port, s.protocol): s for s in services}.values(),
        key=lambda s: (ipaddress.ip_address(s.vip), s.port, s.protocol),
    )
    nat = ["*nat", f":{NAT_CHAIN} - [0:0]"]
    flt = ["*filter", f":{REJECT_CHAIN} - [0:0]"]
    if add_nat_jump:
        nat.append(f"-I OUTPUT 1 -j {NAT_CHAIN}")
    if add_filter_jump:
        flt.append(f"-I OUTPUT 1 -j {REJECT_CHAIN}")
    for svc in ordered:
        match = f"-d {svc.vip}/32 -p {svc.protocol} -m {svc.protocol} --dport {svc.port}"
        label = f"{svc.name}:{svc.port}"
        backends = sorted(set(svc.endpoints), key=lambda e: (ipaddress.ip_address(e.ip), e.port))
        if not backends:
            flt.append(
                f"-A {REJECT_CHAIN} {match} {_comment(label + ' has no endpoints')} -j REJECT"
                + (" --reject-with tcp-reset" if svc.protocol == "tcp" else "")
            )
            continue
        for i, ep in enumerate(backends):
            stat = ""
            if i < len(backends) - 1:
                stat = f" -m statistic --mode random --probability {_probability(i, len(backends))}"
            nat.append(
                f"-A {NAT_CHAIN} {match} {_comment(label)}{stat}"
                f" -j DNAT --to-destination {ep.ip}:{ep.port}"
            )
    return "\n".join([*nat, "COMMIT", *flt, "COMMIT"]) + "\n"


def installed_jumps(iptables_save: str) -> tuple[bool, bool]:
    """Whether ``nat OUTPUT -> PF_SERVICES`` and ``filter OUTPUT -> PF_SERVICES_REJECT`` exist,
    read from ``iptables-save`` output. Pure."""
    table = ""
    nat = flt = False
    for line in iptables_save.splitlines():
        if line.startswith("*"):
            table = line[1:].strip()
        elif line.startswith("-A OUTPUT ") and line.split()[-2:] == ["-j", NAT_CHAIN]:
            nat = nat or table == "nat"
        elif line.startswith("-A OUTPUT ") and line.split()[-2:] == ["-j", REJECT_CHAIN]:
            flt = flt or table == "filter"
    return nat, flt


def has_capture(iptables_save: str) -> bool:
    """Whether the namespace has sidecar capture (istio-init's ``ISTIO_OUTPUT`` nat chain). Pure."""
    table = ""
    for line in iptables_save.splitlines():
        if line.startswith("*"):
            table = line[1:].strip()
        elif table == "nat" and line.startswith(":ISTIO_OUTPUT "):
            return True
    return False


def removal_rules(iptables_save: str) -> str:
    """An ``iptables-restore --noflush`` script deleting every jump and both chains. Pure."""
    nat: list[str] = []
    flt: list[str] = []
    table = ""
    nat_chain = flt_chain = False
    for line in iptables_save.splitlines():
        if line.startswith("*"):
            table = line[1:].strip()
        elif line.startswith(f":{NAT_CHAIN} ") and table == "nat":
            nat_chain = True
        elif line.startswith(f":{REJECT_CHAIN} ") and table == "filter":
            flt_chain = True
        elif line.startswith("-A ") and line.split()[-2:] in (
            ["-j", NAT_CHAIN],
            ["-j", REJECT_CHAIN],
        ):
            target = nat if table == "nat" else flt
            target.append("-D " + line[3:])
    out: list[str] = []
    if nat or nat_chain:
        out += ["*nat", *nat]
        if nat_chain:
            out += [f"-F {NAT_CHAIN}", f"-X {NAT_CHAIN}"]
        out.append("COMMIT")
    if flt or flt_chain:
        out += ["*filter", *flt]
        if flt_chain:
            out += [f"-F {REJECT_CHAIN}", f"-X {REJECT_CHAIN}"]
        out.append("COMMIT")
    return "\n".join(out) + "\n" if out else ""


def _save(netns: str, tools: IptablesTools) -> str:
    return run(in_netns(netns, [tools.save])).stdout


def apply_service_lb(
    netns: str, services: Sequence[ServicePort], tools: IptablesTools | None = None
) -> str:
    """Make ``netns``'s service rules exactly ``services``, atomically; returns the script.

    Refuses a pod with sidecar capture: there Envoy balances, and DNAT would bypass it.
    """
    tools = tools or IptablesTools.default()
    saved = _save(netns, tools)
    if has_capture(saved):
        raise PlatformError(
            f"network namespace {netns}: has sidecar capture (ISTIO_OUTPUT); service VIPs there "
            "are balanced by its Envoy, not by kube-proxy style rules"
        )
    has_nat, has_filter = installed_jumps(saved)
    script = service_lb_rules(services, add_nat_jump=not has_nat, add_filter_jump=not has_filter)
    run(in_netns(netns, [tools.restore, "--noflush"]), stdin=script)
    return script


def remove_service_lb(netns: str, tools: IptablesTools | None = None) -> None:
    """Remove every service rule, jump and chain from ``netns`` (no-op when there are none)."""
    tools = tools or IptablesTools.default()
    script = removal_rules(_save(netns, tools))
    if script:
        run(in_netns(netns, [tools.restore, "--noflush"]), stdin=script)
