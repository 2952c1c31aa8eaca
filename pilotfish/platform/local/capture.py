"""istio-init style transparent capture inside a pod's network namespace.

:func:`capture_rules` is pure: it turns :class:`CaptureSettings` into an ``iptables-restore``
script for the ``nat`` table laid out the way istio-init lays it out, so ``iptables-save``
inside a Pilotfish pod reads like one inside an Istio pod::

    PREROUTING -p tcp -> ISTIO_INBOUND
        RETURN for the proxy's own ports (15020, 15021, 15090) and excluded inbound ports
        -> ISTIO_IN_REDIRECT (REDIRECT --to-ports 15006)
    OUTPUT -p tcp -> ISTIO_OUTPUT
        RETURN for excluded outbound ports and CIDRs
        RETURN   -o lo -s 127.0.0.6            (inbound passthrough from Envoy to the app)
        -> ISTIO_IN_REDIRECT  -o lo ! -d 127.0.0.1 by the proxy (proxy calling its own pod IP)
        RETURN   -o lo by anyone but the proxy   (the app talking to itself)
        RETURN   by the proxy UID, by the proxy GID
        RETURN   -d 127.0.0.1/32
        -> ISTIO_REDIRECT (REDIRECT --to-ports 15001)

:func:`apply_capture` loads the script atomically with ``ip netns exec NS iptables-restore``
(replacing the namespace's whole ``nat`` table); :func:`remove_capture` empties it again.

A whole host (``pilotfish proxy --capture``, the host being the pod) gets the same rules, but
its ``nat`` table may hold rules of others (a container runtime, a firewall):
:func:`host_capture_rules` is the same script loaded with ``iptables-restore --noflush`` (it
creates the ``ISTIO_*`` chains and appends the two jumps, nothing else), and
:func:`host_release_rules` deletes exactly those jumps and chains again
(:func:`apply_host_capture`, :func:`remove_host_capture`).

Envoy needs no capabilities for this (REDIRECT plus the ``original_dst`` listener filter), but it
must run as the excluded UID/GID, otherwise its own upstream connections loop back to 15001.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from pilotfish.api.mesh import (
    AGENT_PORT,
    INBOUND_CAPTURE_PORT,
    OUTBOUND_CAPTURE_PORT,
    READINESS_PORT,
)
from pilotfish.platform.local.commands import IptablesTools, PlatformError, in_netns, run

__all__ = [
    "INBOUND_CHAIN",
    "INBOUND_PASSTHROUGH_SOURCE",
    "IN_REDIRECT_CHAIN",
    "OUTPUT_CHAIN",
    "PROMETHEUS_PORT",
    "REDIRECT_CHAIN",
    "CaptureSettings",
    "apply_capture",
    "apply_host_capture",
    "capture_rules",
    "empty_nat_rules",
    "host_capture_rules",
    "host_release_rules",
    "remove_capture",
    "remove_host_capture",
]

INBOUND_CHAIN = "ISTIO_INBOUND"
IN_REDIRECT_CHAIN = "ISTIO_IN_REDIRECT"
OUTPUT_CHAIN = "ISTIO_OUTPUT"
REDIRECT_CHAIN = "ISTIO_REDIRECT"

#: Envoy's Prometheus stats port in Istio (``/stats/prometheus``).
PROMETHEUS_PORT = 15090
#: Source address Envoy binds when it passes inbound traffic on to the app.
INBOUND_PASSTHROUGH_SOURCE = "127.0.0.6"
LOCALHOST = "127.0.0.1/32"


@dataclass(frozen=True)
class CaptureSettings:
    """What to capture in one pod (Istio's ``traffic.sidecar.istio.io/*`` annotations)."""

    #: UID and GID the sidecar runs as; their traffic is never captured.
    proxy_uid: int
    proxy_gid: int
    outbound_port: int = OUTBOUND_CAPTURE_PORT
    inbound_port: int = INBOUND_CAPTURE_PORT
    #: Ports of the sidecar itself; inbound connections to them go straight through.
    proxy_ports: tuple[int, ...] = (AGENT_PORT, READINESS_PORT, PROMETHEUS_PORT)
    #: ``None`` captures every inbound port (Istio's ``*``); a tuple captures only those ports.
    include_inbound_ports: tuple[int, ...] | None = None
    exclude_inbound_ports: tuple[int, ...] = ()
    #: ``None`` captures every outbound destination (Istio's ``*``); a tuple only those CIDRs.
    include_outbound_cidrs: tuple[str, ...] | None = None
    exclude_outbound_cidrs: tuple[str, ...] = ()
    exclude_outbound_ports: tuple[int, ...] = ()
    #: Capture inbound traffic at all (Istio's ``interceptionMode`` with no inbound ports).
    capture_inbound: bool = True
    passthrough_source: str = INBOUND_PASSTHROUGH_SOURCE

    def __post_init__(self) -> None:
        ports = [
            self.outbound_port,
            self.inbound_port,
            *self.proxy_ports,
            *(self.include_inbound_ports or ()),
            *self.exclude_inbound_ports,
            *self.exclude_outbound_ports,
        ]
        for port in ports:
            if not 0 < port < 65536:
                raise ValueError(f"port {port} is out of range 1-65535")
        for uid in (self.proxy_uid, self.proxy_gid):
            if uid < 0:
                raise ValueError(f"uid/gid {uid} must not be negative")
        for cidr in (*(self.include_outbound_cidrs or ()), *self.exclude_outbound_cidrs):
            _ipv4_net(cidr)
        _ipv4_net(self.passthrough_source)


def _ipv4_net(cidr: str) -> str:
    try:
        net = ipaddress.ip_network(cidr, strict=False)
    except ValueError as exc:
        raise ValueError(f"{cidr!r} is not an IP address or CIDR: {exc}") from exc
    if net.version != 4:
        raise ValueError(f"{cidr!r}: only IPv4 is captured")
    return str(net)


def _unique(values: Sequence[int]) -> list[int]:
    seen: list[int] = []
    for v in values:
        if v not in seen:
            seen.append(v)
    return seen


def capture_rules(settings: CaptureSettings) -> str:
    """The ``iptables-restore`` script (``nat`` table) for one pod. Pure."""
    s = settings
    lines = [
        "*nat",
        ":PREROUTING ACCEPT [0:0]",
        ":INPUT ACCEPT [0:0]",
        ":OUTPUT ACCEPT [0:0]",
        ":POSTROUTING ACCEPT [0:0]",
        f":{INBOUND_CHAIN} - [0:0]",
        f":{IN_REDIRECT_CHAIN} - [0:0]",
        f":{OUTPUT_CHAIN} - [0:0]",
        f":{REDIRECT_CHAIN} - [0:0]",
        f"-A {REDIRECT_CHAIN} -p tcp -j REDIRECT --to-ports {s.outbound_port}",
        f"-A {IN_REDIRECT_CHAIN} -p tcp -j REDIRECT --to-ports {s.inbound_port}",
    ]

    if s.capture_inbound and s.include_inbound_ports != ():
        lines.append(f"-A PREROUTING -p tcp -j {INBOUND_CHAIN}")
        if s.include_inbound_ports is None:
            for port in _unique([*s.proxy_ports, *s.exclude_inbound_ports]):
                lines.append(f"-A {INBOUND_CHAIN} -p tcp --dport {port} -j RETURN")
            lines.append(f"-A {INBOUND_CHAIN} -p tcp -j {IN_REDIRECT_CHAIN}")
        else:
            skipped = {*s.proxy_ports, *s.exclude_inbound_ports}
            for port in _unique(s.include_inbound_ports):
                if port not in skipped:
                    lines.append(f"-A {INBOUND_CHAIN} -p tcp --dport {port} -j {IN_REDIRECT_CHAIN}")

    lines.append(f"-A OUTPUT -p tcp -j {OUTPUT_CHAIN}")
    out = OUTPUT_CHAIN
    for port in _unique(s.exclude_outbound_ports):
        lines.append(f"-A {out} -p tcp --dport {port} -j RETURN")
    for cidr in s.exclude_outbound_cidrs:
        lines.append(f"-A {out} -d {_ipv4_net(cidr)} -j RETURN")
    passthrough = _ipv4_net(s.passthrough_source)
    lines.append(f"-A {out} -s {passthrough} -o lo -j RETURN")
    for match in (f"--uid-owner {s.proxy_uid}", f"--gid-owner {s.proxy_gid}"):
        lines += [
            f"-A {out} ! -d {LOCALHOST} -o lo -m owner {match} -j {IN_REDIRECT_CHAIN}",
            f"-A {out} -o lo -m owner ! {match} -j RETURN",
            f"-A {out} -m owner {match} -j RETURN",
        ]
    lines.append(f"-A {out} -d {LOCALHOST} -j RETURN")
    if s.include_outbound_cidrs is None:
        lines.append(f"-A {out} -j {REDIRECT_CHAIN}")
    else:
        for cidr in s.include_outbound_cidrs:
            lines.append(f"-A {out} -d {_ipv4_net(cidr)} -j {REDIRECT_CHAIN}")
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


_CHAINS = (INBOUND_CHAIN, IN_REDIRECT_CHAIN, OUTPUT_CHAIN, REDIRECT_CHAIN)
_BUILTIN = (":PREROUTING ", ":INPUT ", ":OUTPUT ", ":POSTROUTING ")


def host_capture_rules(settings: CaptureSettings) -> str:
    """The pod's capture script for ``iptables-restore --noflush`` on a whole host: the
    built-in chains are not declared (their policies and other rules stay), the ``ISTIO_*``
    chains are created (or emptied) and filled, the jumps to them appended. Pure."""
    lines = [line for line in capture_rules(settings).splitlines() if not line.startswith(_BUILTIN)]
    return "\n".join(lines) + "\n"


def host_release_rules(settings: CaptureSettings) -> str:
    """The ``iptables-restore --noflush`` script that takes back what
    :func:`host_capture_rules` added for the same settings: the jumps, then the chains. Pure."""
    jumps = [
        "-D" + line[2:]
        for line in capture_rules(settings).splitlines()
        if line.startswith(("-A PREROUTING ", "-A OUTPUT "))
    ]
    flush = [f"-F {chain}" for chain in _CHAINS]
    delete = [f"-X {chain}" for chain in _CHAINS]
    return "\n".join(["*nat", *jumps, *flush, *delete, "COMMIT"]) + "\n"


def apply_host_capture(settings: CaptureSettings, tools: IptablesTools | None = None) -> str:
    """Capture the traffic of the whole network namespace this process runs in (a host), as
    a pod's, keeping the ``nat`` rules of others. Rules a previous run left (it was killed)
    are taken back first. Returns the script that was loaded."""
    tools = tools or IptablesTools.default()
    if _has_capture(tools):
        run([tools.restore, "--noflush"], stdin=host_release_rules(settings), check=False)
        if _has_capture(tools):
            raise PlatformError(
                f"the nat table already has {OUTPUT_CHAIN}/{INBOUND_CHAIN} chains this proxy "
                "did not add (another sidecar's capture?); remove them first"
            )
    script = host_capture_rules(settings)
    run([tools.restore, "--noflush"], stdin=script)
    return script


def remove_host_capture(settings: CaptureSettings, tools: IptablesTools | None = None) -> None:
    """Take back what :func:`apply_host_capture` added (the other ``nat`` rules stay)."""
    tools = tools or IptablesTools.default()
    run([tools.restore, "--noflush"], stdin=host_release_rules(settings))


def _has_capture(tools: IptablesTools) -> bool:
    saved = run([tools.save, "-t", "nat"], check=False).stdout
    return any(line.startswith(f":{chain} ") for line in saved.splitlines() for chain in _CHAINS)


def empty_nat_rules() -> str:
    """An ``iptables-restore`` script that leaves the ``nat`` table empty. Pure."""
    return (
        "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n"
        ":OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\nCOMMIT\n"
    )


def apply_capture(netns: str, settings: CaptureSettings, tools: IptablesTools | None = None) -> str:
    """Install the capture rules in ``netns`` atomically; returns the script that was loaded.

    Replaces the namespace's whole ``nat`` table, so it is safe to call again with new settings.
    """
    tools = tools or IptablesTools.default()
    script = capture_rules(settings)
    run(in_netns(netns, [tools.restore]), stdin=script)
    return script


def remove_capture(netns: str, tools: IptablesTools | None = None) -> None:
    """Empty the ``nat`` table of ``netns`` (no capture any more)."""
    tools = tools or IptablesTools.default()
    run(in_netns(netns, [tools.restore]), stdin=empty_nat_rules())
