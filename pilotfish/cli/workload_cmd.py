"""``pilotfish x workload entry configure``: the files a workload on another host joins with.

As ``istioctl x workload entry configure``: from a WorkloadGroup file it writes ``cluster.env``,
``mesh.yaml``, ``root-cert.pem``, ``istio-token`` and ``hosts`` into ``-o DIR`` (see
:mod:`pilotfish.api.workloadfiles`), and ``bootstrap-patches.json`` when EnvoyFilter BOOTSTRAP
patches select the group's workloads (:mod:`pilotfish.api.bootstrap_patch`; Istio applies them
at a proxy's start, so after such a filter changes, write the files again and restart).
The token is a workload token for the group's namespace and ``template.serviceAccount``,
bound to the group (it registers into that group and no other); the roots and the control
plane's xDS address come from the control plane's API. On the host, ``pilotfish proxy
--config-dir DIR`` starts from that directory alone.
"""

from __future__ import annotations

import ipaddress
import json
import os
from pathlib import Path
from typing import Any

import click

from pilotfish.api import workloadfiles as wf
from pilotfish.api.bootstrap_patch import BOOTSTRAP_PATCHES_FILE, bootstrap_patches
from pilotfish.api.kinds import CONTROL_PLANE_PATH, MESH_CONFIG_PATH, lookup, token_path
from pilotfish.config.loader import load_documents
from pilotfish.errors import PilotfishError


@click.group("workload")
def workload_group() -> None:
    """Workloads on other hosts (VMs), as `istioctl x workload`."""


@workload_group.group("entry")
def entry_group() -> None:
    """WorkloadEntries of workloads on other hosts."""


@entry_group.command("configure")
@click.option(
    "-f", "--file", "file", required=True, metavar="FILE",
    help="The WorkloadGroup (YAML or JSON) the workload belongs to.",
)  # fmt: skip
@click.option(
    "-o", "--output", "output", required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory to write the files to (created; mode 0700).",
)  # fmt: skip
@click.option(
    "--clusterID", "cluster_id", default="Kubernetes", show_default=True,
    help="The cluster the workload is registered in (ISTIO_META_CLUSTER_ID).",
)  # fmt: skip
@click.option(
    "--autoregister", is_flag=True,
    help="The agent registers a WorkloadEntry into the group when it connects "
    "(ISTIO_META_AUTO_REGISTER_GROUP).",
)  # fmt: skip
@click.option(
    "--ingressIP", "ingress_ip", default="",
    help="The address the host reaches the control plane at  [default: the control plane's xDS "
    "address]",
)  # fmt: skip
@click.option(
    "--internalIP", "internal_ip", default="",
    help="The workload's IP in the mesh (ISTIO_SVC_IP)  [default: the agent uses its address "
    "on the route to the control plane]",
)  # fmt: skip
@click.option(
    "--tokenDuration", "token_duration", type=click.IntRange(1), default=86400,
    show_default=True,
    help="Seconds the token lasts. The control plane checks it each time the agent connects "
    "(registration included): it must outlive the host's stay in the mesh.",
)  # fmt: skip
@click.pass_context
def configure(
    ctx: click.Context,
    file: str,
    output: Path,
    cluster_id: str,
    autoregister: bool,
    ingress_ip: str,
    internal_ip: str,
    token_duration: int,
) -> None:
    """Write the files a workload on another host needs to join the mesh.

    \b
    Examples:
      pilotfish apply -f workloadgroup.yaml
      pilotfish x workload entry configure -f workloadgroup.yaml -o vm-files --autoregister
      # on the host, as root:
      pilotfish proxy --config-dir vm-files
    """
    group = _read_group(file)
    meta = group.get("metadata") or {}
    name, namespace = str(meta.get("name") or ""), str(meta.get("namespace") or "default")
    if not name:
        raise click.UsageError(f"{file}: WorkloadGroup metadata.name is required")
    spec = group.get("spec") or {}
    template = spec.get("template") or {}
    account = str(template.get("serviceAccount") or "default")
    labels = {
        **{str(k): str(v) for k, v in (template.get("labels") or {}).items()},
        **{str(k): str(v) for k, v in ((spec.get("metadata") or {}).get("labels") or {}).items()},
    }
    for value, option in ((ingress_ip, "--ingressIP"), (internal_ip, "--internalIP")):
        if value:
            try:
                ipaddress.ip_address(value)
            except ValueError:
                raise click.BadParameter(
                    f"{value!r} is not an IP address", param_hint=option
                ) from None

    g = ctx.find_root().obj
    try:
        with g.client() as client:
            stored = client.list_objects(lookup("WorkloadGroup"), namespace).get("items")
            if autoregister and name not in {
                str((i.get("metadata") or {}).get("name")) for i in stored or []
            }:
                click.echo(
                    f"warning: WorkloadGroup {namespace}/{name} is not applied yet: the agent "
                    f"cannot register until it is (pilotfish apply -f {file})",
                    err=True,
                )
            plane = client.request("GET", CONTROL_PLANE_PATH)
            body: dict[str, Any] = {
                "spec": {
                    "expirationSeconds": token_duration,
                    "boundObjectRef": {
                        "apiVersion": "networking.istio.io/v1",
                        "kind": "WorkloadGroup",
                        "name": name,
                    },
                }
            }
            token = client.request("POST", token_path(namespace, account), json=body)
            filters = client.list_objects(lookup("EnvoyFilter"), None).get("items") or []
            root = "istio-system"
            if filters:
                mesh = client.request("GET", MESH_CONFIG_PATH) or {}
                root = str(mesh.get("rootNamespace") or root)
    except PilotfishError as exc:
        raise click.ClickException(str(exc)) from None

    host, _, port = str(plane["xdsAddress"]).rpartition(":")
    address = ingress_ip or host.strip("[]")
    if not address or ipaddress.ip_address(address).is_unspecified:
        raise click.UsageError(
            f"the control plane listens for xDS on {plane['xdsAddress']} (every address): "
            "pass --ingressIP with the one this host reaches it at"
        )
    files = wf.WorkloadFiles(
        namespace=namespace,
        service_account=account,
        labels=labels,
        auto_register_group=name if autoregister else "",
        workload_name=name,
        cluster_id=cluster_id,
        trust_domain=str(plane.get("trustDomain") or "cluster.local"),
        discovery_address=f"{wf.CONTROL_PLANE_NAME}:{port}",
        control_plane_ip=address,
        xds_tls=bool(plane.get("xdsTls", True)),
        internal_ip=internal_ip,
        network=str(template.get("network") or ""),
        readiness_probe=spec.get("probe") or None,
    )
    output.mkdir(parents=True, exist_ok=True, mode=0o700)
    contents = {
        wf.CLUSTER_ENV: wf.render_cluster_env(files),
        wf.MESH_YAML: wf.render_mesh_yaml(files),
        wf.ROOT_CERT: str(plane["rootCert"]),
        wf.TOKEN: str(token["status"]["token"]) + "\n",
        wf.HOSTS: wf.render_hosts(files),
    }
    patches = bootstrap_patches(
        filters,
        root_namespace=root,
        namespace=namespace,
        labels=labels,
        metadata={"NAMESPACE": namespace, "LABELS": labels, "SERVICE_ACCOUNT": account},
    )
    stale = output / BOOTSTRAP_PATCHES_FILE
    if patches:
        contents[BOOTSTRAP_PATCHES_FILE] = json.dumps(patches, indent=2) + "\n"
    elif stale.exists():
        stale.unlink()  # written for an EnvoyFilter since removed
    for filename, text in contents.items():
        path = output / filename
        mode = 0o600 if filename == wf.TOKEN else 0o644
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "w") as f:
            os.fchmod(f.fileno(), mode)
            f.write(text)
    click.echo(
        f"wrote {', '.join(contents)} to {output} (token for {namespace}/{account}, bound to "
        f"WorkloadGroup {name}, expires {token['status']['expirationTimestamp']})"
    )
    click.echo(f"on the host, as root: pilotfish proxy --config-dir {output}")


def _read_group(file: str) -> dict[str, Any]:
    try:
        docs = load_documents([file])
    except PilotfishError as exc:
        raise click.UsageError(str(exc)) from None
    groups = [d.body for d in docs if d.body.get("kind") == "WorkloadGroup"]
    if len(groups) != 1:
        raise click.UsageError(f"{file}: expected one WorkloadGroup, found {len(groups)}")
    return groups[0]


__all__ = ["configure", "entry_group", "workload_group"]
