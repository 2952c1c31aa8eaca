"""``pilotfish bug-report``, as ``istioctl bug-report``: one ``tar.gz`` with what it takes to
understand a problem, secrets left out.

Inside (``bug-report-<time>/``):

- ``versions.txt``: the CLI's, the control plane's and the Envoy binary's versions;
- ``status.txt``: each part of the local mesh (as ``pilotfish status``);
- ``config/<kind>.yaml``: every stored object of every kind, Secrets as names and types only;
  ``config/meshconfig.yaml``: the mesh config in force;
- ``proxy-status.json``: every connected proxy's xDS state (NACKs with Envoy's error);
- ``proxies/<pod>.<namespace>/``: its Envoy's ``config_dump.json`` (the secrets section left
  out), ``clusters.txt``, ``server_info.json`` and, for pods of the local runtime and the
  ingress gateway, its proxy's log;
- ``logs/``: the local mesh's component logs (control plane, runtime, gateway, Prometheus...).

Logs are cut to their last :data:`MAX_LOG_BYTES`. Every file passes :func:`scrub` before it is
written: PEM private keys and bearer tokens are replaced by ``[redacted]``. What could not be
collected is listed in ``errors.txt`` (never silently missing).
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import tarfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import yaml

from pilotfish import __version__
from pilotfish.cli.runtime_cmds import CONTEXT_SETTINGS, _data_dir_options, _settings
from pilotfish.errors import PilotfishError
from pilotfish.platform.local.runtime_mesh import load_mesh, mesh_status

__all__ = ["bug_report", "scrub"]

#: Each log is cut to its last this many bytes.
MAX_LOG_BYTES = 2 * 1024 * 1024
_PRIVATE_KEY = re.compile(
    r"-----BEGIN ([A-Z0-9 ]*)PRIVATE KEY-----.*?-----END \1PRIVATE KEY-----", re.S
)
_BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{8,}")
_SECRETS_DUMP = "type.googleapis.com/envoy.admin.v3.SecretsConfigDump"


def scrub(text: str) -> str:
    """``text`` without PEM private keys and bearer tokens. Pure."""
    text = _PRIVATE_KEY.sub("[redacted private key]", text)
    return _BEARER.sub(r"\1[redacted]", text)


def secret_summary(body: dict[str, Any]) -> dict[str, Any]:
    """A Secret as its name, type and the keys of its data, without any value. Pure."""
    meta = body.get("metadata") or {}
    return {
        "apiVersion": body.get("apiVersion"),
        "kind": "Secret",
        "metadata": {"name": meta.get("name"), "namespace": meta.get("namespace")},
        "type": body.get("type"),
        "dataKeys": sorted({*(body.get("data") or {}), *(body.get("stringData") or {})}),
    }


def without_secrets(dump: dict[str, Any]) -> dict[str, Any]:
    """An Envoy config dump without its secrets section. Pure."""
    configs = [c for c in dump.get("configs") or [] if c.get("@type") != _SECRETS_DUMP]
    return {**dump, "configs": configs}


class Archive:
    def __init__(self, root: str) -> None:
        self.root = root
        self.buffer = io.BytesIO()
        self.tar = tarfile.open(fileobj=self.buffer, mode="w:gz")  # noqa: SIM115
        self.errors: list[str] = []
        self.files = 0

    def add(self, name: str, text: str) -> None:
        data = scrub(text).encode()
        info = tarfile.TarInfo(f"{self.root}/{name}")
        info.size = len(data)
        info.mtime = int(time.time())
        info.mode = 0o600
        self.tar.addfile(info, io.BytesIO(data))
        self.files += 1

    def collect(self, what: str, fn: Callable[[], None]) -> None:
        try:
            fn()
        except (PilotfishError, OSError, ValueError, subprocess.SubprocessError) as exc:
            self.errors.append(f"{what}: {exc}")

    def close(self) -> bytes:
        if self.errors:
            self.add("errors.txt", "\n".join(self.errors) + "\n")
        self.tar.close()
        return self.buffer.getvalue()


def _tail(path: Path) -> str:
    with path.open("rb") as f:
        f.seek(0, 2)
        size = f.tell()
        f.seek(max(0, size - MAX_LOG_BYTES))
        data = f.read()
    cut = f"[... first {size - MAX_LOG_BYTES} bytes left out ...]\n" if size > MAX_LOG_BYTES else ""
    return cut + data.decode(errors="replace")


def _log_adder(archive: Archive, name: str, path: Path) -> Callable[[], None]:
    return lambda: archive.add(name, _tail(path))


def _versions(client: Any) -> str:
    from pilotfish.cli.verify_cmd import envoy_version_text

    lines = [f"client: {__version__}"]
    try:
        v = client.request("GET", "/version")
        lines.append(f"control plane: {v.get('version')} (config revision {v.get('revision')})")
    except PilotfishError as exc:
        lines.append(f"control plane: not reachable ({exc})")
    lines.append(f"envoy: {envoy_version_text()}")
    return "\n".join(lines) + "\n"


def _config(archive: Archive, client: Any) -> None:
    from pilotfish.api import kinds

    for info in kinds.KINDS:
        items = list(client.list_objects(info, None).get("items") or [])
        if info.kind == "Secret":
            items = [secret_summary(o) for o in items]
        if items:
            archive.add(f"config/{info.plural}.yaml", yaml.safe_dump_all(items, sort_keys=False))
    archive.add("config/meshconfig.yaml", yaml.safe_dump(client.mesh_config(), sort_keys=False))


def _proxy_logs(state: Path, mesh: dict[str, Any], namespace: str, pod: str) -> Path | None:
    log = state / "pods" / namespace / pod / "istio-proxy.log"
    if log.is_file():
        return log
    if (namespace, pod) == ("istio-system", "istio-ingressgateway"):
        entry = mesh.get("gateway_process") or {}
        if entry.get("log"):
            return Path(str(entry["log"]))
    return None


def _proxies(archive: Archive, state: Path, mesh: dict[str, Any], status: list[Any]) -> None:
    from pilotfish.cli.envoy_admin import find_admin

    for p in sorted(status, key=lambda p: (p.get("namespace", ""), p.get("pod_name", ""))):
        ns, pod = str(p.get("namespace")), str(p.get("pod_name"))
        base = f"proxies/{pod}.{ns}"

        def dump(ns: str = ns, pod: str = pod, base: str = base) -> None:
            admin = find_admin(ns, pod, status)
            full = json.loads(admin.request("GET", "/config_dump"))
            archive.add(f"{base}/config_dump.json", json.dumps(without_secrets(full), indent=2))
            archive.add(f"{base}/clusters.txt", admin.request("GET", "/clusters"))
            archive.add(f"{base}/server_info.json", admin.request("GET", "/server_info"))

        archive.collect(f"{pod}.{ns}: Envoy admin", dump)
        log = _proxy_logs(state, mesh, ns, pod)
        if log is not None:
            archive.collect(f"{pod}.{ns}: log", _log_adder(archive, f"{base}/istio-proxy.log", log))


@click.command("bug-report", context_settings=CONTEXT_SETTINGS)
@click.option("-o", "--output", "out", type=click.Path(dir_okay=False, path_type=Path),
              help="The archive to write  [default: bug-report-<time>.tar.gz]")  # fmt: skip
@_data_dir_options
@click.pass_obj
def bug_report(g: Any, out: Path | None, data_dir: Path | None, state_dir: Path | None) -> None:
    """Collect config, proxy state, config dumps and logs into one archive, secrets left out.

    As `istioctl bug-report`: the versions, every stored object (Secrets as names and types
    only), the mesh config, `proxy-status`, every connected proxy's Envoy config dump (without
    its secrets section), clusters and server info, the proxies' logs and the local mesh's
    component logs. PEM private keys and bearer tokens are redacted from every file. Reading
    the Envoys of local pods needs root, as `pilotfish exec`.

    \b
    Examples:
      sudo pilotfish bug-report
      sudo pilotfish bug-report -o /tmp/mesh-report.tar.gz
    """
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = out or Path(f"bug-report-{stamp}.tar.gz")
    s = _settings(data_dir, state_dir)
    mesh = load_mesh(s.state_dir) or {}
    if mesh.get("prefix"):
        s = _settings(data_dir, state_dir, prefix=mesh["prefix"], pod_cidr=mesh.get("pod_cidr"))
    archive = Archive(f"bug-report-{stamp}")

    def status() -> None:
        lines = [f"{p.name}: {p.state or ('healthy' if p.healthy else 'not healthy')}: "
                 f"{p.detail}" for p in mesh_status(s)]  # fmt: skip
        archive.add("status.txt", "\n".join(lines or ["no local mesh runs here"]) + "\n")

    archive.collect("status", status)
    proxies: list[Any] = []
    try:
        client_cm = g.client()
    except SystemExit:
        client_cm = None
        archive.errors.append("control plane: no context configured")
    if client_cm is not None:
        with client_cm as client:
            archive.collect("versions", lambda: archive.add("versions.txt", _versions(client)))
            archive.collect("config", lambda: _config(archive, client))

            def proxy_status() -> None:
                proxies.extend(client.proxy_status())
                archive.add("proxy-status.json", json.dumps(proxies, indent=2))

            archive.collect("proxy-status", proxy_status)
    archive.collect("proxies", lambda: _proxies(archive, s.state_dir, mesh, proxies))
    if s.logs_dir.is_dir():
        for log in sorted(s.logs_dir.glob("*.log")):
            archive.collect(f"log {log.name}", _log_adder(archive, f"logs/{log.name}", log))
    data = archive.close()
    out.write_bytes(data)
    out.chmod(0o600)
    click.echo(f"wrote {out} ({archive.files} files, {len(data) // 1024} KiB)")
    for error in archive.errors:
        click.echo(f"Warning: not collected: {error}", err=True)
