"""``pilotfish port-forward``: forward local ports to a pod, as ``kubectl port-forward``.

Targets are written as kubectl writes them: ``POD``, ``pod/POD``, ``svc/SERVICE`` (a
running pod the Service selects, at the ``targetPort`` of the Service port named) or
``deploy/NAME`` (a running pod of the Deployment). Each accepted connection is relayed to
``127.0.0.1:PORT`` inside the pod's network namespace, by the path ``pilotfish exec``
takes, so it reaches the app as kubectl's port-forward does (not through the sidecar).

Istio's addon Services that Pilotfish's control plane serves itself (``kiali``, ``grafana``,
``tracing``, ``jaeger-query`` and ``prometheus`` in ``istio-system``) are forwarded to the
control plane's dashboard, trace UI and Prometheus when no such Service is stored, so the
tutorials' ``kubectl port-forward svc/kiali -n istio-system 20001:20001`` works as written.

The pure part (parsing and resolving a target) is separate from the forwarding loop.
"""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import click

from pilotfish.api import kinds
from pilotfish.api.kinds import DASHBOARD_PATH
from pilotfish.cli.dashboard_cmd import RELAY
from pilotfish.errors import PilotfishError

__all__ = [
    "ADDONS",
    "Forward",
    "parse_ports",
    "parse_target",
    "pod_port",
    "port_forward_cmd",
    "select_pod",
    "service_target_port",
]

_KINDS = {
    "pod": "Pod",
    "pods": "Pod",
    "po": "Pod",
    "svc": "Service",
    "service": "Service",
    "services": "Service",
    "deploy": "Deployment",
    "deployment": "Deployment",
    "deployments": "Deployment",
}

#: Istio's addon Services (``istio-system``) and the part of the control plane serving each:
#: ``dashboard`` (the service graph and metrics pages), ``jaeger`` (traces), ``prometheus``.
ADDONS = {
    "kiali": "dashboard",
    "grafana": "dashboard",
    "tracing": "jaeger",
    "jaeger-query": "jaeger",
    "prometheus": "prometheus",
}


def parse_target(text: str) -> tuple[str, str]:
    """``svc/kiali`` -> ``("Service", "kiali")``; a bare name is a pod."""
    kind, sep, name = text.partition("/")
    if not sep:
        return "Pod", text
    found = _KINDS.get(kind.lower())
    if found is None or not name:
        raise click.BadParameter(
            f'"{text}": write POD, pod/POD, svc/SERVICE or deploy/DEPLOYMENT', param_hint="TARGET"
        )
    return found, name


def parse_ports(specs: Sequence[str]) -> list[tuple[int, int]]:
    """kubectl's ``LOCAL:REMOTE``, ``PORT`` (the same both sides) and ``:REMOTE`` (a free
    local port, written 0)."""
    out: list[tuple[int, int]] = []
    for spec in specs:
        local_text, sep, remote_text = spec.partition(":")
        if not sep:
            local_text = remote_text = spec
        try:
            local = int(local_text) if local_text else 0
            remote = int(remote_text)
        except ValueError:
            raise click.BadParameter(
                f'"{spec}": write LOCAL:REMOTE, PORT or :REMOTE (numbers)', param_hint="PORT"
            ) from None
        if not (0 <= local <= 65535 and 0 < remote <= 65535):
            raise click.BadParameter(f'"{spec}": ports are 1-65535', param_hint="PORT")
        out.append((local, remote))
    return out


def _labels_match(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def select_pod(pods: Sequence[Mapping[str, Any]], selector: Mapping[str, str]) -> dict[str, Any]:
    """The first running pod (by name) whose labels match ``selector``."""
    matching = sorted(
        (
            p
            for p in pods
            if (p.get("status") or {}).get("phase") == "Running"
            and _labels_match(selector, (p.get("metadata") or {}).get("labels") or {})
        ),
        key=lambda p: str(p["metadata"]["name"]),
    )
    if not matching:
        wanted = ",".join(f"{k}={v}" for k, v in sorted(selector.items()))
        raise PilotfishError(f"no running pod matches the selector {wanted}")
    return dict(matching[0])


def service_target_port(service: Mapping[str, Any], port: int) -> int | str:
    """The ``targetPort`` of the Service port ``port`` (kubectl forwards to the pod's port)."""
    spec = service.get("spec") or {}
    name = (service.get("metadata") or {}).get("name", "")
    for p in spec.get("ports") or []:
        if p.get("port") == port:
            target = p.get("targetPort")
            return port if target in (None, "") else target
    ports = ", ".join(str(p.get("port")) for p in spec.get("ports") or [])
    raise PilotfishError(f'Service "{name}" has no port {port} (ports: {ports or "none"})')


def pod_port(pod: Mapping[str, Any], target: int | str) -> int:
    """A numeric target, or the container port with that name."""
    if isinstance(target, int):
        return target
    if target.isdigit():
        return int(target)
    for c in (pod.get("spec") or {}).get("containers") or []:
        for p in c.get("ports") or []:
            if p.get("name") == target:
                return int(p["containerPort"])
    name = (pod.get("metadata") or {}).get("name", "")
    raise PilotfishError(f'pod "{name}" has no container port named "{target}"')


@dataclass(frozen=True)
class Forward:
    """Where a local port goes: ``port`` in the pod's network namespace ``netns``, or
    ``host:port`` on this host (``netns`` None)."""

    local: int
    port: int
    what: str
    netns: str | None = None
    host: str = "127.0.0.1"

    def served_at(self, address: str) -> bool:
        """The target already listens on ``address:local`` (the dashboard on its own port):
        there is nothing to forward."""
        return self.netns is None and self.local == self.port and self.host == address


def _url_target(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or (443 if parts.scheme == "https" else 80)


def _resolve(
    g: Any, kind: str, name: str, namespace: str, ports: list[tuple[int, int]]
) -> tuple[list[Forward], str | None]:
    """The forwards for a target, and a login link for the dashboard (else None)."""
    with g.client() as client:
        if kind == "Service":
            try:
                svc = client.get(kinds.by_kind("Service"), namespace, name)
            except PilotfishError:
                if namespace != "istio-system" or name not in ADDONS:
                    raise
                return _addon(client, name, ports)
            selector = (svc.get("spec") or {}).get("selector") or {}
            if not selector:
                raise PilotfishError(f'Service "{name}" has no selector: no pod to forward to')
            pods = client.list_objects(kinds.by_kind("Pod"), namespace).get("items", [])
            pod = select_pod(pods, selector)
            targets = [(lp, pod_port(pod, service_target_port(svc, rp))) for lp, rp in ports]
        else:
            if kind == "Deployment":
                dep = client.get(kinds.by_kind("Deployment"), namespace, name)
                spec = dep.get("spec") or {}
                selector = (spec.get("selector") or {}).get("matchLabels") or {}
                pods = client.list_objects(kinds.by_kind("Pod"), namespace).get("items", [])
                pod = select_pod(pods, selector)
            else:
                pod = client.get(kinds.by_kind("Pod"), namespace, name)
            targets = list(ports)
    from pilotfish.cli.runtime_cmds import local_pod_netns

    pod_name = str(pod["metadata"]["name"])
    netns = local_pod_netns(namespace, pod_name)
    if netns is None:
        raise PilotfishError(
            f'pod "{namespace}/{pod_name}" is not a pod of the local runtime on this host'
        )
    return [Forward(lp, rp, f"pod {namespace}/{pod_name}", netns) for lp, rp in targets], None


def _addon(client: Any, name: str, ports: list[tuple[int, int]]) -> tuple[list[Forward], str]:
    part = ADDONS[name]
    info: dict[str, Any] = client.request("GET", DASHBOARD_PATH)
    url = info.get("url") if part == "dashboard" else info.get(part)
    if not url:
        raise PilotfishError(f"svc/{name}: the mesh runs no {part} (see `pilotfish status`)")
    host, port = _url_target(str(url))
    what = f"the control plane's {part} ({url}), Istio's {name} addon"
    login = ""
    if part == "dashboard":
        login = str(client.request("POST", DASHBOARD_PATH).get("loginUrl") or "")
    return [Forward(lp, port, what, None, host) for lp, _ in ports], login


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := src.recv(65536):
            dst.sendall(data)
        dst.shutdown(socket.SHUT_WR)


def relay_to_host(conn: socket.socket, host: str, port: int) -> None:
    """Join ``conn`` to ``host:port`` until both sides close."""
    with conn, contextlib.suppress(OSError), socket.create_connection((host, port)) as up:
        t = threading.Thread(target=_pipe, args=(conn, up), daemon=True)
        t.start()
        _pipe(up, conn)
        t.join()


def _relay_to_pod(conn: socket.socket, netns: str, port: int) -> None:
    import subprocess

    from pilotfish.cli.runtime_cmds import in_pod_netns

    argv = in_pod_netns(netns, [sys.executable, "-c", RELAY, str(port)])
    with conn, contextlib.suppress(OSError):
        subprocess.run(argv, stdin=conn.fileno(), stdout=conn.fileno(), check=False)


def serve(
    forwards: Sequence[Forward],
    address: str,
    on_listen: Callable[[Forward, int], None],
    on_connection: Callable[[Forward], None],
    stop: threading.Event | None = None,
) -> None:
    """Listen on ``address`` for every forward and relay each connection until ``stop`` (or
    Ctrl-C)."""
    listeners: list[tuple[socket.socket, Forward]] = []
    try:
        for f in forwards:
            if f.served_at(address):
                on_listen(f, f.local)
                continue
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((address, f.local))
            except OSError as exc:
                s.close()
                raise PilotfishError(f"unable to listen on {address}:{f.local}: {exc}") from None
            s.listen(16)
            s.settimeout(0.2)
            listeners.append((s, f))
            on_listen(f, s.getsockname()[1])

        def accept(s: socket.socket, f: Forward) -> None:
            while stop is None or not stop.is_set():
                try:
                    conn, _ = s.accept()
                except TimeoutError:
                    continue
                except OSError:
                    return
                conn.settimeout(None)
                on_connection(f)
                if f.netns is not None:
                    target: Any = (_relay_to_pod, (conn, f.netns, f.port))
                else:
                    target = (relay_to_host, (conn, f.host, f.port))
                threading.Thread(target=target[0], args=target[1], daemon=True).start()

        threads = [threading.Thread(target=accept, args=item, daemon=True) for item in listeners]
        for t in threads:
            t.start()
        for t in threads:
            while t.is_alive():
                t.join(0.5)
        while not threads and (stop is None or not stop.is_set()):
            time.sleep(0.5)  # only targets that serve the port themselves: wait as kubectl
    except KeyboardInterrupt:
        pass
    finally:
        for s, _ in listeners:
            s.close()


@click.command("port-forward")
@click.argument("target")
@click.argument("ports", nargs=-1, required=True)
@click.option("-n", "--namespace", default="default", show_default=True)
@click.option(
    "--address",
    default="127.0.0.1",
    show_default=True,
    help="Local address to listen on (kubectl's --address; `localhost` is 127.0.0.1).",
)
@click.pass_obj
def port_forward_cmd(
    g: Any, target: str, ports: tuple[str, ...], namespace: str, address: str
) -> None:
    """Forward local ports to a pod, as `kubectl port-forward`.

    \b
    Examples:
      pilotfish port-forward svc/kiali -n istio-system 20001:20001   # the dashboard
      pilotfish port-forward deploy/productpage-v1 9080
      pilotfish port-forward pod/reviews-v1-5c7d9b-abcde 8080:9080
    """
    kind, name = parse_target(target)
    pairs = parse_ports(ports)
    forwards, login = _resolve(g, kind, name, namespace, pairs)
    if address == "localhost":
        address = "127.0.0.1"

    def on_listen(f: Forward, local: int) -> None:
        if f.served_at(address):
            click.echo(
                f"Forwarding from {address}:{local} -> {f.port}  ({f.what}, which listens on "
                f"{address}:{local} itself: nothing to relay)"
            )
        else:
            click.echo(f"Forwarding from {address}:{local} -> {f.port}  ({f.what})")
        if login:
            path = urlsplit(login).path
            click.echo(f"Sign in once: http://{address}:{local}{path}")
        sys.stdout.flush()

    def on_connection(f: Forward) -> None:
        click.echo(f"Handling connection for {f.local or f.port}")

    serve(forwards, address, on_listen, on_connection)
