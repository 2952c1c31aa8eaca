"""``pilotfish proxy``: run the sidecar (or gateway) agent in the foreground.

Self-contained click command; the CLI's main group loads it on first use from its table of
lazy commands (``LAZY_COMMANDS`` in :mod:`pilotfish.cli.main`). Option parsing and checks live
in :func:`build_settings` (pure); its inverse, the options for given settings, is
:func:`pilotfish.agent.launch.agent_argv`. The command itself only sets up logging and runs
:func:`pilotfish.agent.agent.run_agent`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import socket
import tempfile
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

import click
import yaml

from pilotfish.agent.agent import run_agent
from pilotfish.agent.envoy_binary import ENV_OVERRIDE as ENVOY_OVERRIDE
from pilotfish.agent.envoy_binary import envoy_binary
from pilotfish.agent.settings import (
    TLS_MODE_LABEL,
    AgentSettings,
    AppMetrics,
    HostPort,
    IdentitySettings,
    LogLevel,
    XdsTls,
)
from pilotfish.api.bootstrap_patch import BOOTSTRAP_PATCHES_FILE
from pilotfish.api.duration import parse_duration
from pilotfish.api.mesh import (
    ADMIN_PORT,
    AGENT_PORT,
    DEFAULT_XDS_ADDRESS,
    GATEWAY_PORTS,
    OUTBOUND_CAPTURE_PORT,
    READINESS_PORT,
)
from pilotfish.api.node import NodeInfo

#: Options of the command that choose how it runs on a host (read before build_settings).
HOST_OPTIONS = ("config_dir", "capture", "exclude_inbound_ports")


def parse_label(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise click.BadParameter(f"{text!r} is not KEY=VALUE (e.g. --label app=reviews)")
    return key, value


def parse_port_pair(text: str, option: str, example: str) -> tuple[int, int]:
    left, sep, right = text.partition(":")
    if not sep or not left.isdigit() or not right.isdigit():
        raise click.BadParameter(f"{text!r} is not PORT:PORT (e.g. {option} {example})")
    a, b = int(left), int(right)
    for port in (a, b):
        if not 0 < port < 65536:
            raise click.BadParameter(f"{text!r}: port {port} is out of range 1-65535")
    return a, b


def build_settings(
    *,
    proxy_type: str = "sidecar",
    discovery_address: str | Sequence[str] = DEFAULT_XDS_ADDRESS,
    plaintext: bool = False,
    ca_file: Path | None = None,
    cert_file: Path | None = None,
    key_file: Path | None = None,
    xds_server_name: str = "",
    namespace: str = "default",
    pod_name: str | None = None,
    ip: str = "127.0.0.1",
    labels: Sequence[str] = (),
    service_account: str = "default",
    workload_name: str = "",
    interception_mode: str | None = None,
    outbound_port: int | None = None,
    inbound_ports: Sequence[str] = (),
    gateway_ports: Sequence[str] = (),
    bind_address: str = "0.0.0.0",
    admin_port: int = ADMIN_PORT,
    readiness_port: int = READINESS_PORT,
    agent_port: int = AGENT_PORT,
    concurrency: int = 2,
    drain_seconds: float = 5.0,
    xds_api: str = "delta",
    initial_fetch_timeout: float = 10.0,
    work_dir: Path | None = None,
    log_level: str = "warning",
    envoy_log_path: Path | None = None,
    http_proxy_env: bool = False,
    envoy_user: str | None = None,
    system_ca_file: Path | None = None,
    bootstrap_patches: Path | None = None,
    token_file: Path | None = None,
    cert_ttl: str = "24h",
    app_command: Sequence[str] = (),
    app_metrics_port: int | None = None,
    app_metrics_path: str = "/metrics",
    workload_group: str | None = None,
    readiness_probe: str | None = None,
) -> AgentSettings:
    """Turn the command's options into :class:`AgentSettings`; usage errors name the option."""
    addresses = parse_discovery_addresses(discovery_address)
    address = addresses[0]
    tls = _xds_tls(addresses, plaintext, ca_file, cert_file, key_file, xds_server_name)

    mode = interception_mode or ("REDIRECT" if proxy_type == "sidecar" else "NONE")
    if mode == "REDIRECT" and (outbound_port is not None or inbound_ports):
        raise click.UsageError(
            "--outbound-port and --inbound-port are for --interception-mode NONE "
            "(with REDIRECT, iptables sends traffic to 15001/15006)"
        )
    if proxy_type == "sidecar" and gateway_ports:
        raise click.UsageError("--gateway-port is for --type router")
    if app_command and mode != "NONE":
        raise click.UsageError(
            "an app command (-- CMD...) is run only in explicit mode: add --interception-mode NONE"
        )
    inbound = dict(parse_port_pair(p, "--inbound-port", "9080:19080") for p in inbound_ports)
    gateways = dict(parse_port_pair(p, "--gateway-port", "80:8080") for p in gateway_ports)
    if proxy_type == "router" and not gateways:
        gateways = dict(GATEWAY_PORTS)
    if mode == "NONE" and proxy_type == "sidecar" and outbound_port is None:
        outbound_port = OUTBOUND_CAPTURE_PORT

    identity = _identity(token_file, cert_ttl)
    node_labels = dict(parse_label(label) for label in labels)
    if identity is not None:
        # As Istio's injector labels pods: this workload has a mesh certificate.
        node_labels[TLS_MODE_LABEL] = "istio"
    elif node_labels.get(TLS_MODE_LABEL) == "istio":
        # Without a workload token there is no certificate to serve mTLS with.
        del node_labels[TLS_MODE_LABEL]
    extra: dict[str, str] = {}
    if workload_group:
        # The API models behind these names cost the agent ~0.1 s of start: only on demand.
        from pilotfish.api.networking import auto_registered_name
        from pilotfish.api.node import AUTO_REGISTER_GROUP_METADATA

        if proxy_type != "sidecar":
            raise click.UsageError("--workload-group is for sidecars (--type sidecar)")
        registered = auto_registered_name(workload_group, ip)
        if pod_name and pod_name != registered:
            raise click.UsageError(
                f"--workload-group names the workload {registered} (<group>-<ip>, as Istio): "
                "drop --pod-name"
            )
        pod_name = registered
        extra[AUTO_REGISTER_GROUP_METADATA] = workload_group
    probe = _readiness_probe(readiness_probe) if readiness_probe else None
    if probe is not None and not workload_group:
        raise click.UsageError(
            "--readiness-probe reports the workload's health to its WorkloadEntry: add "
            "--workload-group"
        )
    pod = pod_name or socket.gethostname()
    node = NodeInfo(
        proxy_type="router" if proxy_type == "router" else "sidecar",
        ip=ip,
        pod_name=pod,
        namespace=namespace,
        labels=node_labels,
        service_account=service_account,
        workload_name=workload_name,
        interception_mode="NONE" if mode == "NONE" else "REDIRECT",
        outbound_port=outbound_port,
        inbound_ports=inbound,
        gateway_ports=gateways,
        bind_address=bind_address,
        extra=extra,
    )
    if work_dir is None:
        work_dir = Path(tempfile.gettempdir()) / "pilotfish" / "proxy" / f"{pod}.{namespace}"
    try:
        return AgentSettings(
            node=node,
            work_dir=work_dir,
            discovery_address=address,
            discovery_fallbacks=addresses[1:],
            xds_tls=tls,
            identity=identity,
            xds_api="sotw" if xds_api == "sotw" else "delta",
            initial_fetch_timeout_s=initial_fetch_timeout,
            admin_port=admin_port,
            readiness_port=readiness_port,
            agent_port=agent_port,
            concurrency=concurrency,
            drain_seconds=drain_seconds,
            log_level=_log_level(log_level),
            log_path=envoy_log_path,
            app_command=tuple(app_command),
            app_http_proxy_env=http_proxy_env,
            envoy_user=envoy_user,
            system_ca_file=system_ca_file,
            bootstrap_patches=bootstrap_patches,
            app_metrics=(
                AppMetrics(app_metrics_port, app_metrics_path or "/metrics")
                if app_metrics_port is not None
                else None
            ),
            workload_probe=probe,
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc


def parse_discovery_addresses(values: str | Sequence[str]) -> tuple[HostPort, ...]:
    """``--discovery-address`` given once or more, each a ``HOST:PORT`` or a comma list."""
    texts = [values] if isinstance(values, str) else list(values)
    parts = [part.strip() for text in texts for part in text.split(",") if part.strip()]
    if not parts:
        parts = [DEFAULT_XDS_ADDRESS]
    try:
        return tuple(dict.fromkeys(HostPort.parse(part) for part in parts))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--discovery-address") from exc


def _xds_tls(
    addresses: Sequence[HostPort],
    plaintext: bool,
    ca_file: Path | None,
    cert_file: Path | None,
    key_file: Path | None,
    server_name: str,
) -> XdsTls | None:
    if plaintext and ca_file is not None:
        raise click.UsageError("--plaintext and --ca-file exclude each other")
    if ca_file is None:
        if cert_file is not None or key_file is not None:
            raise click.UsageError("--cert-file/--key-file need --ca-file")
        remote = [a for a in addresses if not a.is_loopback]
        if not plaintext and remote:
            raise click.UsageError(
                f"the control plane at {remote[0]} is not on this host: pass --ca-file PATH to "
                "verify it over TLS, or --plaintext to connect without TLS"
            )
        return None
    try:
        return XdsTls(ca_file, cert_file, key_file, server_name)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc


def _identity(token_file: Path | None, cert_ttl: str) -> IdentitySettings | None:
    if token_file is None:
        return None
    try:
        ttl = parse_duration(cert_ttl)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--cert-ttl") from exc
    if ttl <= 0:
        raise click.BadParameter("must be positive", param_hint="--cert-ttl")
    return IdentitySettings(token_file=token_file, cert_ttl=timedelta(seconds=ttl))


def _log_level(text: str) -> LogLevel:
    level = text.lower()
    if level not in _LOG_LEVELS:
        raise click.BadParameter(f"{text!r} is not one of {', '.join(_LOG_LEVELS)}")
    return cast(LogLevel, level)


_LOG_LEVELS = ["trace", "debug", "info", "warning", "error", "critical", "off"]


@click.command("proxy", context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--type",
    "proxy_type",
    type=click.Choice(["sidecar", "router"]),
    default="sidecar",
    show_default=True,
    help="sidecar: next to one workload. router: an ingress/egress gateway.",
)
@click.option(
    "--discovery-address",
    multiple=True,
    default=[DEFAULT_XDS_ADDRESS],
    show_default=True,
    metavar="HOST:PORT",
    help="The control plane's xDS address; repeat it (or give a comma list) for every "
    "replica: Envoy and the CA client fail over between them.",
)
@click.option(
    "--plaintext",
    is_flag=True,
    help="Connect to the control plane without TLS: for one started with --xds-plaintext "
    "(implied for a loopback address without --ca-file).",
)
@click.option(
    "--ca-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Connect over TLS and verify the control plane with this CA bundle: the mesh roots, "
    "<data-dir>/ca/mesh-roots.pem of the control plane.",
)
@click.option(
    "--cert-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Client certificate for the control plane (with --key-file).",
)
@click.option(
    "--key-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Private key of --cert-file.",
)
@click.option(
    "--xds-server-name",
    default="",
    help="SNI and required DNS SAN of the control plane  [default: the certificate must name "
    "the --discovery-address host]",
)
@click.option(
    "--token-file",
    envvar="PILOTFISH_TOKEN_FILE",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Workload token (`pilotfish token create`): the proxy gets a mesh certificate for "
    "its namespace and service account from the control plane's CA and does mTLS.  "
    "[env: PILOTFISH_TOKEN_FILE]",
)
@click.option(
    "--cert-ttl",
    default="24h",
    show_default=True,
    help="Lifetime asked for the workload certificate (renewed at half-life).",
)
@click.option("--namespace", default="default", show_default=True, help="The workload's namespace.")
@click.option("--pod-name", help="The workload's name in node ids  [default: this host's name]")
@click.option(
    "--workload-group",
    metavar="NAME",
    help="Register this workload into the WorkloadGroup NAME of --namespace when it connects: "
    "the control plane creates the WorkloadEntry <NAME>-<IP> from the group's template and "
    "removes it when the proxy has been gone for the reconnect grace.",
)
@click.option(
    "--readiness-probe",
    metavar="PROBE",
    help="The WorkloadGroup's probe (Istio's ReadinessProbe as JSON or YAML: httpGet, "
    "tcpSocket or exec, with its timing fields), run against the app; health changes are "
    "reported to the control plane, which sets the WorkloadEntry's Healthy condition. "
    "--config-dir reads it from mesh.yaml's defaultConfig.readinessProbe.",
)
@click.option(
    "--ip", default="127.0.0.1", show_default=True, help="The workload's IP (its endpoint address)."
)
@click.option(
    "--label",
    "labels",
    multiple=True,
    metavar="KEY=VALUE",
    help="A workload label, e.g. app=reviews, version=v1 (repeatable).",
)
@click.option("--service-account", default="default", show_default=True)
@click.option("--workload-name", default="", help="Deployment-style workload name.")
@click.option(
    "--interception-mode",
    type=click.Choice(["REDIRECT", "NONE"]),
    help="REDIRECT: iptables capture (15001 outbound, 15006 inbound). NONE: explicit mode, "
    "the app calls 127.0.0.1:--outbound-port and callers reach --inbound-port.  "
    "[default: REDIRECT for sidecars, NONE for routers]",
)
@click.option(
    "--outbound-port",
    type=click.IntRange(1, 65535),
    help="NONE mode: loopback port of the outbound listener the app sends to  [default: 15001]",
)
@click.option(
    "--inbound-port",
    "inbound_ports",
    multiple=True,
    metavar="APP:LISTEN",
    help="NONE mode: the sidecar listens on LISTEN (on --ip) for the app's port APP "
    "(repeatable), e.g. 9080:19080.",
)
@click.option(
    "--gateway-port",
    "gateway_ports",
    multiple=True,
    metavar="PORT:LISTEN",
    help="Routers: a Gateway server PORT is bound on LISTEN (repeatable)  "
    "[default: 80:8080 443:8443]",
)
@click.option(
    "--bind-address",
    default="0.0.0.0",
    show_default=True,
    help="Routers: the address gateway listeners bind.",
)
@click.option("--admin-port", type=click.IntRange(1, 65535), default=ADMIN_PORT, show_default=True)
@click.option(
    "--readiness-port",
    type=click.IntRange(1, 65535),
    default=READINESS_PORT,
    show_default=True,
    help="Envoy's GET /healthz/ready listener.",
)
@click.option(
    "--agent-port",
    type=click.IntRange(1, 65535),
    default=AGENT_PORT,
    show_default=True,
    help="The agent's /healthz/ready and /stats/prometheus.",
)
@click.option(
    "--concurrency", type=click.IntRange(1), default=2, show_default=True, help="Envoy workers."
)
@click.option(
    "--drain-seconds",
    type=click.FloatRange(0),
    default=5.0,
    show_default=True,
    help="On SIGTERM, how long in-flight requests may take before Envoy stops.",
)
@click.option(
    "--xds-api",
    type=click.Choice(["delta", "sotw"]),
    default="delta",
    show_default=True,
    help="Delta xDS or State-of-the-World.",
)
@click.option(
    "--initial-fetch-timeout",
    type=click.FloatRange(0),
    default=10.0,
    show_default=True,
    help="Seconds Envoy waits for its first config before starting without it (0: forever). "
    "The proxy stays not-ready until config arrives either way.",
)
@click.option(
    "--work-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the bootstrap is written  [default: $TMPDIR/pilotfish/proxy/POD.NAMESPACE]",
)
@click.option(
    "--log-level", type=click.Choice(_LOG_LEVELS), default="warning", show_default=True,
    help="Envoy's log level.",
)  # fmt: skip
@click.option(
    "--envoy-log-path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Envoy's log file  [default: stderr]",
)
@click.option(
    "--http-proxy-env",
    is_flag=True,
    help="Explicit mode: also set HTTP_PROXY for the app (the outbound listener as a proxy).",
)
@click.option(
    "--envoy-user",
    metavar="USER",
    help="Run Envoy as USER (a dedicated proxy user that capture rules exclude; needs root).",
)
@click.option(
    "--system-ca-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The CA bundle Envoy trusts as the system roots (a DestinationRule's TLS origination "
    "without a CA verifies servers with it)  [default: the host's bundle, "
    "/etc/ssl/certs/ca-certificates.crt on Debian]",
)
@click.option(
    "--bootstrap-patches",
    type=click.Path(dir_okay=False, path_type=Path),
    help="EnvoyFilter BOOTSTRAP patches that select this proxy (a JSON list of Bootstrap "
    "values, merged in order into Envoy's bootstrap, as Istio merges them); the local runtime "
    "writes it for its pods  [default: --config-dir's bootstrap-patches.json if there is one]",
)
@click.option(
    "--app-metrics-port",
    type=click.IntRange(1, 65535),
    help="The app's Prometheus port (its pod's prometheus.io/port): merged into "
    "/stats/prometheus on --agent-port.",
)
@click.option(
    "--app-metrics-path",
    default="/metrics",
    show_default=True,
    help="The app's Prometheus path (prometheus.io/path).",
)
@click.option(
    "--config-dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Start from the files `pilotfish x workload entry configure` wrote (cluster.env, "
    "mesh.yaml, root-cert.pem, istio-token, hosts): namespace, service account, labels, "
    "WorkloadGroup, control plane and its TLS, token; implies --capture. Options given on the "
    "command line win.",
)
@click.option(
    "--capture",
    is_flag=True,
    help="Capture the traffic of this whole host (its network namespace) with the pod's "
    "iptables rules (15001 outbound, 15006 inbound), and take them back on exit. Needs root "
    "and --envoy-user  [default: pilotfish-proxy when it exists].",
)
@click.option(
    "--exclude-inbound-port",
    "exclude_inbound_ports",
    multiple=True,
    type=click.IntRange(1, 65535),
    metavar="PORT",
    help="--capture: inbound port left alone (repeatable; 22 and the proxy's own ports always "
    "are).",
)
@click.argument("app_command", nargs=-1, type=click.UNPROCESSED, metavar="[-- CMD...]")
@click.pass_context
def proxy(ctx: click.Context, **options: Any) -> None:
    """Run an Envoy sidecar (or gateway) for one workload until SIGTERM.

    The agent writes Envoy's bootstrap, starts Envoy, serves readiness on
    --readiness-port and --agent-port, restarts Envoy if it dies, and on SIGTERM/SIGINT drains
    it for up to --drain-seconds and exits 0.

    With --token-file the proxy gets a workload certificate for
    spiffe://cluster.local/ns/NAMESPACE/sa/SERVICE_ACCOUNT from the control plane's CA (the
    token must be for that namespace and service account), serves it to Envoy over SDS and
    takes part in mesh mTLS. Without one, it speaks plaintext only.

    Explicit mode (--interception-mode NONE): a command after `--` is the app. It starts once
    the proxy is ready, with PILOTFISH_OUTBOUND=127.0.0.1:PORT in its environment (send mesh
    requests there, service in the Host header), and is stopped before the proxy drains.

    \b
    Examples:
      pilotfish proxy --namespace default --pod-name reviews-v1 --ip 10.44.0.7 \\
          --label app=reviews --label version=v1
      pilotfish proxy --interception-mode NONE --outbound-port 15001 \\
          --inbound-port 9080:19080 --label app=ratings -- python ratings.py
      pilotfish proxy --type router --namespace istio-system --pod-name ingressgateway \\
          --label istio=ingressgateway --gateway-port 80:8080
    """
    config_dir: Path | None = options.pop("config_dir")
    capture: bool = options.pop("capture")
    excluded: tuple[int, ...] = options.pop("exclude_inbound_ports")
    from_dir: dict[str, Any] = {}
    if config_dir is not None:
        given = {
            name
            for name in options
            if ctx.get_parameter_source(name)
            in (click.core.ParameterSource.COMMANDLINE, click.core.ParameterSource.ENVIRONMENT)
        }
        from_dir, excluded_from_dir = options_from_dir(config_dir)
        options.update({k: v for k, v in from_dir.items() if k not in given})
        excluded = (*excluded_from_dir, *excluded)
        capture = capture or options.get("interception_mode") != "NONE"
    if capture:
        if options.get("interception_mode") == "NONE":
            raise click.UsageError("--capture is for --interception-mode REDIRECT")
        options["interception_mode"] = "REDIRECT"
        if not options.get("envoy_user"):
            options["envoy_user"] = default_envoy_user()
        if ctx.get_parameter_source("ip") == click.core.ParameterSource.DEFAULT and (
            "ip" not in from_dir
        ):
            options["ip"] = source_address_towards(options["discovery_address"])
    settings = build_settings(**options)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if not capture:
        ctx.exit(asyncio.run(run_agent(settings)))
    ctx.exit(run_captured(settings, excluded))


def _readiness_probe(text: str) -> dict[str, Any]:
    """``--readiness-probe``: Istio's ReadinessProbe as JSON or YAML, checked now."""
    from pilotfish.api.probe import Probe, ProbeError

    try:
        raw = yaml.safe_load(text)
        if not isinstance(raw, dict):
            raise ProbeError("probe: must be a mapping")
        Probe.parse(raw)
    except (yaml.YAMLError, ProbeError) as exc:
        raise click.UsageError(f"--readiness-probe: {exc}") from None
    return raw


def options_from_dir(directory: Path) -> tuple[dict[str, Any], tuple[int, ...]]:
    """``pilotfish proxy`` options from a directory ``x workload entry configure`` wrote, and
    the inbound ports it leaves uncaptured. Errors name the file."""
    from pilotfish.api import workloadfiles as wf

    def read(name: str) -> str:
        path = directory / name
        try:
            return path.read_text()
        except OSError as exc:
            raise click.UsageError(f"--config-dir: cannot read {path}: {exc.strerror}") from None

    try:
        mesh = yaml.safe_load(read(wf.MESH_YAML)) or {}
        env = wf.parse_cluster_env(read(wf.CLUSTER_ENV))
        hosts = wf.parse_hosts(read(wf.HOSTS)) if (directory / wf.HOSTS).exists() else {}
        found = wf.proxy_options(env, mesh, hosts)
    except (ValueError, yaml.YAMLError) as exc:
        raise click.UsageError(f"--config-dir {directory}: {exc}") from None
    options: dict[str, Any] = {
        "namespace": found.namespace,
        "service_account": found.service_account,
        "labels": tuple(f"{k}={v}" for k, v in found.labels.items()),
        "workload_name": found.workload_name,
        "discovery_address": (found.discovery_address,),
        "xds_server_name": found.xds_server_name,
        "plaintext": found.plaintext,
        "token_file": directory / wf.TOKEN,
    }
    if not found.plaintext:
        options["ca_file"] = directory / wf.ROOT_CERT
    if found.workload_group:
        options["workload_group"] = found.workload_group
    if found.ip:
        options["ip"] = found.ip
    if (directory / BOOTSTRAP_PATCHES_FILE).exists():
        options["bootstrap_patches"] = directory / BOOTSTRAP_PATCHES_FILE
    probe = (mesh.get("defaultConfig") or {}).get("readinessProbe")
    if probe:
        # The WorkloadGroup's probe, as istioctl writes it into the proxy config.
        options["readiness_probe"] = json.dumps(probe)
    return options, found.excluded_inbound_ports


def default_envoy_user() -> str:
    """The proxy user of the local runtime (``pilotfish-proxy``) when this host has it."""
    import pwd

    from pilotfish.platform.local.users import PROXY_USER

    try:
        pwd.getpwnam(PROXY_USER)
    except KeyError:
        raise click.UsageError(
            f"--capture runs Envoy as a user the capture rules leave alone: pass --envoy-user "
            f"USER (or create the user {PROXY_USER})"
        ) from None
    return PROXY_USER


def source_address_towards(addresses: str | Sequence[str]) -> str:
    """This host's address on the route to the control plane (its IP in the mesh)."""
    target = parse_discovery_addresses(addresses)[0]
    try:
        info = socket.getaddrinfo(target.host, target.port, socket.AF_INET, socket.SOCK_DGRAM)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(info[0][4])
            return str(s.getsockname()[0])
    except OSError as exc:
        raise click.UsageError(
            f"cannot find this host's address towards {target}: {exc}; pass --ip"
        ) from None


def run_captured(settings: AgentSettings, excluded: Sequence[int]) -> int:
    """Run the agent with the whole host captured as a pod (the pod's rules, from the local
    runtime), and take the rules back when it ends, however it ends but SIGKILL (the next
    start then takes back what was left)."""
    import pwd

    from pilotfish.fsaccess import R, X, access_problem
    from pilotfish.platform.local.capture import (
        PROMETHEUS_PORT,
        CaptureSettings,
        apply_host_capture,
        remove_host_capture,
    )
    from pilotfish.platform.local.commands import PlatformError
    from pilotfish.platform.local.exposure import stage_envoy
    from pilotfish.platform.local.users import UserIds

    if os.geteuid() != 0:
        raise click.UsageError("--capture needs root (iptables)")
    assert settings.envoy_user is not None
    entry = pwd.getpwnam(settings.envoy_user)
    # Envoy runs as that user: a copy it can execute when it cannot reach this installation's
    # (as the local runtime stages it for pods).
    user = UserIds(settings.envoy_user, entry.pw_uid, entry.pw_gid)
    os.environ[ENVOY_OVERRIDE] = str(stage_envoy(envoy_binary(), user))
    settings.work_dir.mkdir(parents=True, exist_ok=True)
    problem = access_problem(settings.work_dir, entry.pw_uid, [entry.pw_gid], X)
    if problem:
        raise click.UsageError(
            f"--work-dir {settings.work_dir}: Envoy runs as {settings.envoy_user}, which cannot "
            f"reach it ({problem}): choose a directory it can reach"
        )
    tls = settings.xds_tls
    if tls is not None and access_problem(tls.ca_file, entry.pw_uid, [entry.pw_gid], R):
        # Envoy reads the mesh roots itself; the configured directory may be private.
        roots = settings.work_dir / "xds-roots.pem"
        roots.write_bytes(tls.ca_file.read_bytes())
        roots.chmod(0o644)
        settings = dataclasses.replace(settings, xds_tls=dataclasses.replace(tls, ca_file=roots))
    ports = [settings.readiness_port, PROMETHEUS_PORT]
    if settings.agent_port is not None:
        ports.append(settings.agent_port)
    rules = CaptureSettings(
        entry.pw_uid,
        entry.pw_gid,
        proxy_ports=tuple(ports),
        exclude_inbound_ports=tuple(dict.fromkeys([22, *excluded])),
    )
    log = logging.getLogger("pilotfish.agent")
    try:
        apply_host_capture(rules)
    except PlatformError as exc:
        raise click.ClickException(f"--capture: {exc}") from None
    log.info("captured this host's traffic (nat table: ISTIO_INBOUND, ISTIO_OUTPUT)")
    try:
        # As a pod's agent: root, with the proxy user's group, so the rules let its own
        # connections to the control plane (certificates) through, as they do Envoy's.
        os.setgroups([])
        os.setgid(entry.pw_gid)
        return asyncio.run(run_agent(settings))
    finally:
        remove_host_capture(rules)
        log.info("removed the capture rules of this host")
