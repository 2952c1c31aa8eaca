"""``pilotfish dashboard``: open the web dashboard, the mesh's Prometheus or a proxy's Envoy admin.

As ``istioctl dashboard``::

    pilotfish dashboard                   # the graph (= kiali), signed in by a one-time link
    pilotfish dashboard grafana|jaeger    # the metrics / traces pages
    pilotfish dashboard prometheus        # the mesh's own Prometheus UI
    pilotfish dashboard envoy POD[.NS]    # that proxy's Envoy admin, through a local port

The CLI asks the control plane's API where the dashboard is and for a one-time login link
(``POST /apis/pilotfish.io/v1/dashboard``), so the browser opens signed in without the admin
token in its history. Without a display (or with ``--browser=false``) it prints the URL.

Envoy's admin listens on ``127.0.0.1`` inside the pod's network namespace: the command
forwards a free local port to it, each connection through a relay started in the pod's
network namespace (as `pilotfish exec` enters it), prints the address and forwards until
Ctrl-C, as ``istioctl dashboard envoy`` port-forwards.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import webbrowser
from typing import Any

import click

from pilotfish.api.kinds import DASHBOARD_PATH
from pilotfish.cli.envoy_admin import EnvoyAdmin, find_admin
from pilotfish.errors import PilotfishError

PAGES = {"kiali": "graph", "grafana": "metrics", "jaeger": "traces"}
TARGETS = (*PAGES, "prometheus", "envoy")

#: Runs inside the pod's network namespace: joins stdin/stdout (the accepted connection) to
#: 127.0.0.1:PORT.
RELAY = """
import os, socket, sys, threading
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
def up():
    while True:
        data = os.read(0, 65536)
        if not data:
            s.shutdown(socket.SHUT_WR); return
        s.sendall(data)
threading.Thread(target=up, daemon=True).start()
while True:
    data = s.recv(65536)
    if not data:
        break
    os.write(1, data)
"""


def has_display(env: dict[str, str] | None = None) -> bool:
    env = dict(os.environ) if env is None else env
    return bool(env.get("DISPLAY") or env.get("WAYLAND_DISPLAY")) or sys.platform == "darwin"


def _open(url: str, browser: bool, what: str) -> None:
    click.echo(f"{what}: {url}")
    if browser and has_display():
        webbrowser.open(url)
    elif browser:
        click.echo("(no display: open the URL above in a browser)", err=True)


@click.command("dashboard")
@click.argument("target", required=False, default="kiali", type=click.Choice(TARGETS))
@click.argument("pod", required=False)
@click.option("-n", "--namespace", default=None, help="The pod's namespace (or POD.NAMESPACE).")
@click.option(
    "--browser",
    type=click.BOOL,
    default=True,
    show_default=True,
    help="Open a browser (false: only print the URL; also when there is no display).",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=0,
    help="envoy: the local port to forward (0: a free one).",
)
@click.pass_obj
def dashboard_cmd(
    g: Any, target: str, pod: str | None, namespace: str | None, browser: bool, port: int
) -> None:
    """Open the web dashboard, the mesh's Prometheus or a proxy's Envoy admin.

    \b
    Examples:
      pilotfish dashboard                         # the service graph (kiali)
      pilotfish dashboard grafana --browser=false # print the metrics page's login link
      pilotfish dashboard jaeger
      pilotfish dashboard prometheus
      pilotfish dashboard envoy productpage-v1-6b7f6c9d5f-abcde.default
    """
    with g.client() as client:
        if target == "envoy":
            if not pod:
                raise click.UsageError("envoy needs a POD (POD or POD.NAMESPACE)")
            name, _, ns = pod.partition(".")
            admin = find_admin(ns or namespace or "default", name, client.proxy_status())
            _forward_envoy(admin, port, browser)
            return
        if pod:
            raise click.UsageError(f"{target} takes no POD argument")
        info: dict[str, Any] = client.request("GET", DASHBOARD_PATH)
        if target == "prometheus":
            _open(str(info["prometheus"]), browser, "Prometheus")
            return
        link: dict[str, Any] = client.request("POST", DASHBOARD_PATH)
        page = PAGES[target]
        _open(f"{link['loginUrl']}?page={page}", browser, f"dashboard ({page}, one-time link)")


def _forward_envoy(admin: EnvoyAdmin, port: int, browser: bool) -> None:
    if admin.netns is None:  # a proxy of this host's network namespace: already local
        _open(f"http://127.0.0.1:{admin.port}", browser, f"Envoy admin of {admin.proxy}")
        return
    from pilotfish.cli.runtime_cmds import in_pod_netns

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(("127.0.0.1", port))
    except OSError as exc:
        raise PilotfishError(f"cannot listen on 127.0.0.1:{port}: {exc}") from None
    listener.listen(16)
    local = listener.getsockname()[1]
    argv = in_pod_netns(admin.netns, [sys.executable, "-c", RELAY, str(admin.port)])

    def relay(conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            subprocess.run(argv, stdin=conn.fileno(), stdout=conn.fileno(), check=False)

    _open(
        f"http://127.0.0.1:{local}",
        browser,
        f"Envoy admin of {admin.proxy} (forwarded to its 127.0.0.1:{admin.port}; Ctrl-C stops)",
    )
    sys.stdout.flush()
    try:
        while True:
            conn, _ = listener.accept()
            threading.Thread(target=relay, args=(conn,), daemon=True).start()
    except KeyboardInterrupt:
        pass
    finally:
        listener.close()
