"""Reaching one proxy's Envoy admin API from the CLI (what istioctl reaches by port-forward).

Envoy's admin listens on ``127.0.0.1`` only, inside the proxy's network namespace, and it is
never exposed on the network (it can change log levels and drain listeners). The CLI reaches
it the way an operator on the host would:

- a **pod of the local runtime** on this host: a tiny HTTP client runs inside the pod's network
  namespace, by the same path `pilotfish exec` takes (``ip netns exec``); this needs root, as
  `pilotfish exec` does;
- a **proxy in the host's network namespace** (the ingress gateway of `pilotfish up`, or
  `pilotfish proxy` started on this host): ``127.0.0.1:<admin port>``.

The admin port comes from the proxy's node metadata (``ADMIN_PORT``, announced by the agent
and listed by `pilotfish proxy-status -o json`); a pod without it uses Istio's 15000.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

import httpx

from pilotfish.api.mesh import ADMIN_PORT
from pilotfish.errors import PilotfishError

#: Runs inside a pod's network namespace: one request to the admin API, the body on stdout.
#: Exit 3 with the body when Envoy answers an error status, 2 when it cannot be reached.
_FETCH = """
import sys, urllib.request, urllib.error
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
try:
    with opener.open(urllib.request.Request(sys.argv[2], method=sys.argv[1]), timeout=15) as r:
        sys.stdout.buffer.write(r.read())
except urllib.error.HTTPError as e:
    sys.stdout.buffer.write(e.read()); sys.exit(3)
except OSError as e:
    sys.stderr.write(str(getattr(e, "reason", e))); sys.exit(2)
"""


class EnvoyAdminError(PilotfishError):
    """A proxy's Envoy admin could not be reached or refused a request."""


@dataclass(frozen=True)
class EnvoyAdmin:
    """Where one proxy's Envoy admin is: ``127.0.0.1:port`` in ``netns`` (None: the host's)."""

    proxy: str  # POD.NAMESPACE, for messages
    port: int
    netns: str | None = None

    def request(self, method: str, path: str) -> str:
        """The body of ``METHOD path`` (``path`` with its query), or :class:`EnvoyAdminError`."""
        url = f"http://127.0.0.1:{self.port}{path}"
        if self.netns is None:
            try:
                resp = httpx.request(method, url, timeout=15, trust_env=False)
            except httpx.HTTPError as exc:
                raise EnvoyAdminError(
                    f"{self.proxy}: cannot reach its Envoy admin at 127.0.0.1:{self.port} "
                    f"({exc}); is the proxy running on this host?"
                ) from None
            if resp.status_code >= 400:
                raise EnvoyAdminError(
                    f"{self.proxy}: Envoy admin {method} {path} answered "
                    f"{resp.status_code}: {resp.text.strip()}"
                )
            return resp.text
        from pilotfish.cli.runtime_cmds import in_pod_netns

        argv = in_pod_netns(self.netns, [sys.executable, "-c", _FETCH, method, url])
        try:
            res = subprocess.run(argv, capture_output=True, timeout=30, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise EnvoyAdminError(
                f"{self.proxy}: cannot enter the pod's network namespace: {exc}"
            ) from None
        body = res.stdout.decode(errors="replace")
        if res.returncode == 3:
            raise EnvoyAdminError(
                f"{self.proxy}: Envoy admin {method} {path} answered an error: {body.strip()}"
            )
        if res.returncode != 0:
            why = res.stderr.decode(errors="replace").strip() or f"exit {res.returncode}"
            raise EnvoyAdminError(
                f"{self.proxy}: cannot reach its Envoy admin at 127.0.0.1:{self.port} in the "
                f"pod's network namespace: {why}"
            )
        return body


def find_admin(namespace: str, name: str, status: list[dict[str, Any]]) -> EnvoyAdmin:
    """Where the Envoy admin of ``name.namespace`` is, from the local runtime's pods and the
    control plane's proxy status (``status``: `pilotfish proxy-status -o json` items)."""
    proxy = f"{name}.{namespace}"
    entry = next(
        (p for p in status if p.get("namespace") == namespace and p.get("pod_name") == name),
        None,
    )
    port = int((entry or {}).get("admin_port") or ADMIN_PORT)
    netns = _local_pod_netns(namespace, name)
    if netns is not None:
        if os.geteuid() != 0:
            raise EnvoyAdminError(
                f"{proxy}: its Envoy admin is inside the pod's network namespace; reaching it "
                "needs root (as `pilotfish exec` does)"
            )
        return EnvoyAdmin(proxy, port, netns)
    if entry is None:
        raise EnvoyAdminError(
            f'proxy "{proxy}" is not connected to the control plane and is not a pod of the '
            "local runtime (see `pilotfish proxy-status` and `pilotfish get pods -A`)"
        )
    if not entry.get("admin_port"):
        raise EnvoyAdminError(
            f"{proxy}: its agent did not announce an Envoy admin port (an older agent?)"
        )
    return EnvoyAdmin(proxy, port)


def _local_pod_netns(namespace: str, name: str) -> str | None:
    try:
        from pilotfish.cli.runtime_cmds import local_pod_netns

        return local_pod_netns(namespace, name)
    except (OSError, ImportError):
        return None
