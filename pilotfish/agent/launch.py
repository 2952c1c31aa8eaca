"""The agent's launch contract: :class:`AgentSettings` -> the ``pilotfish proxy`` options.

:func:`agent_argv` is the inverse of :func:`pilotfish.cli.proxy_cmd.build_settings`: the
command ``pilotfish proxy *agent_argv(s)`` runs an agent with settings equal to ``s``. Every
place that starts an agent as a process (the local runtime's pods and gateway, the tests'
mesh harness, the benchmarks) builds its command line here, so the options are spelled once.

Settings the command line cannot express (``readiness_bind``, ``agent_port=None``, renewal
fractions, ...) must keep their defaults; :func:`agent_argv` raises ``ValueError`` otherwise.
"""

from __future__ import annotations

from dataclasses import fields

from pilotfish.agent.settings import TLS_MODE_LABEL, AgentSettings, IdentitySettings
from pilotfish.api.mesh import GATEWAY_PORTS

#: The module that runs the ``pilotfish`` command (``python -m PROXY_MODULE proxy ...``).
PROXY_MODULE = "pilotfish.cli.main"

# AgentSettings / IdentitySettings fields with a command-line option.
_OPTIONS = frozenset({
    "node", "work_dir", "discovery_address", "discovery_fallbacks", "xds_tls", "identity",
    "xds_api", "initial_fetch_timeout_s", "admin_port", "readiness_port", "agent_port",
    "concurrency", "drain_seconds", "log_level", "log_path", "envoy_user", "app_command",
    "app_http_proxy_env",
    "app_metrics", "system_ca_file", "bootstrap_patches",
})  # fmt: skip
_IDENTITY_OPTIONS = frozenset({"token_file", "cert_ttl"})
_NODE_FIXED = ("domain_suffix", "trust_domain", "extra")


def _number(value: float) -> str:
    return repr(float(value))


def _check_expressible(s: AgentSettings) -> None:
    default = AgentSettings(node=s.node, work_dir=s.work_dir)
    for f in fields(AgentSettings):
        if f.name not in _OPTIONS and getattr(s, f.name) != getattr(default, f.name):
            raise ValueError(f"pilotfish proxy has no option for {f.name}={getattr(s, f.name)!r}")
    if s.agent_port is None:
        raise ValueError("pilotfish proxy always runs its agent server (agent_port=None)")
    if s.identity is not None:
        plain = IdentitySettings(token_file=s.identity.token_file)
        for f in fields(IdentitySettings):
            value = getattr(s.identity, f.name)
            if f.name not in _IDENTITY_OPTIONS and value != getattr(plain, f.name):
                raise ValueError(f"pilotfish proxy has no option for identity {f.name}={value!r}")
    node_default = type(s.node)(s.node.proxy_type, s.node.ip, s.node.pod_name, s.node.namespace)
    for name in _NODE_FIXED:
        if getattr(s.node, name) != getattr(node_default, name):
            raise ValueError(f"pilotfish proxy has no option for node {name}")


def agent_argv(s: AgentSettings) -> list[str]:
    """The ``pilotfish proxy`` options (after ``proxy``) that give back ``s``."""
    _check_expressible(s)
    node = s.node
    argv = [
        "--type", node.proxy_type,
        "--interception-mode", node.interception_mode,
        "--discovery-address", ",".join(str(a) for a in s.discovery_addresses),
        "--namespace", node.namespace,
        "--pod-name", node.pod_name,
        "--ip", node.ip,
        "--service-account", node.service_account,
        "--admin-port", str(s.admin_port),
        "--readiness-port", str(s.readiness_port),
        "--agent-port", str(s.agent_port),
        "--concurrency", str(s.concurrency),
        "--drain-seconds", _number(s.drain_seconds),
        "--xds-api", s.xds_api,
        "--initial-fetch-timeout", _number(s.initial_fetch_timeout_s),
        "--log-level", s.log_level,
        "--work-dir", str(s.work_dir),
    ]  # fmt: skip
    if node.workload_name:
        argv += ["--workload-name", node.workload_name]
    tls = s.xds_tls
    if tls is None:
        if not all(a.is_loopback for a in s.discovery_addresses):
            argv.append("--plaintext")
    else:
        argv += ["--ca-file", str(tls.ca_file)]
        if tls.cert_file is not None and tls.key_file is not None:
            argv += ["--cert-file", str(tls.cert_file), "--key-file", str(tls.key_file)]
        if tls.server_name:
            argv += ["--xds-server-name", tls.server_name]
    if s.identity is not None:
        ttl = s.identity.cert_ttl.total_seconds()
        argv += ["--token-file", str(s.identity.token_file), "--cert-ttl", f"{ttl:g}s"]
    # The mesh-TLS label follows the identity (build_settings sets or drops it).
    for k, v in sorted(node.labels.items()):
        if not (k == TLS_MODE_LABEL and v == "istio"):
            argv += ["--label", f"{k}={v}"]
    if node.outbound_port is not None:
        argv += ["--outbound-port", str(node.outbound_port)]
    for app, listen in sorted(node.inbound_ports.items()):
        argv += ["--inbound-port", f"{app}:{listen}"]
    if node.proxy_type == "router":
        for port, listen in sorted((node.gateway_ports or GATEWAY_PORTS).items()):
            argv += ["--gateway-port", f"{port}:{listen}"]
        argv += ["--bind-address", node.bind_address]
    elif node.bind_address != "0.0.0.0":
        raise ValueError("pilotfish proxy takes --bind-address for routers only")
    if s.log_path is not None:
        argv += ["--envoy-log-path", str(s.log_path)]
    if s.app_http_proxy_env:
        argv.append("--http-proxy-env")
    if s.envoy_user is not None:
        argv += ["--envoy-user", s.envoy_user]
    if s.system_ca_file is not None:
        argv += ["--system-ca-file", str(s.system_ca_file)]
    if s.bootstrap_patches is not None:
        argv += ["--bootstrap-patches", str(s.bootstrap_patches)]
    if s.app_metrics is not None:
        if s.app_metrics.host != "127.0.0.1":
            raise ValueError("pilotfish proxy scrapes the app's metrics on 127.0.0.1 only")
        argv += ["--app-metrics-port", str(s.app_metrics.port)]
        argv += ["--app-metrics-path", s.app_metrics.path]
    if s.app_command:
        argv += ["--", *s.app_command]
    return argv
