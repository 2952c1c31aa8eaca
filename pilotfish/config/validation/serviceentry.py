"""ServiceEntry and WorkloadEntry semantics, after Istio's ``ValidateServiceEntry`` and
``validateWorkloadEntry``."""

from __future__ import annotations

from typing import Any

from pilotfish.api.networking import (
    ServiceEntry,
    ServiceEntrySpec,
    WorkloadEntry,
    WorkloadEntrySpec,
    WorkloadGroup,
)
from pilotfish.api.probe import PROBE_ACTION_FIELDS, PROBE_FIELDS, Probe, ProbeError
from pilotfish.config.validation.common import (
    HTTP_PROTOCOLS,
    TLS_PROTOCOLS,
    Errors,
    check_export_to,
    check_labels,
    check_selector,
    fqdn_error,
    is_ip,
    partial_wildcard_error,
    port_error,
    port_name_error,
    protocol_error,
    protocol_of,
    subnet_error,
    wildcard_domain_error,
)

UNIX_PREFIX = "unix://"


def validate_service_entry(se: ServiceEntry, errs: Errors, namespace: str) -> None:
    spec = se.spec
    resolution = spec.resolution or "NONE"
    if spec.workloadSelector is not None:
        check_selector(errs, "spec.workloadSelector.labels", spec.workloadSelector.labels)
        if not spec.workloadSelector.labels:
            errs.warn(
                "spec.workloadSelector",
                "service entry: workload selector specified without labels, will be applied "
                "to all services in namespace",
            )
        if "endpoints" in spec.model_fields_set:
            errs.add(
                "spec", "only one of WorkloadSelector or Endpoints is allowed in Service Entry"
            )
    if not spec.hosts:
        errs.add("spec.hosts", "service entry must have at least one host")
    for i, host in enumerate(spec.hosts):
        if host == "*":
            errs.add(f"spec.hosts[{i}]", f"invalid host {host}")
        else:
            errs.add(f"spec.hosts[{i}]", wildcard_domain_error(host))
            if (w := partial_wildcard_error(host)) is not None:
                errs.warn(f"spec.hosts[{i}]", w)
    cidr = False
    for i, address in enumerate(spec.addresses):
        cidr = cidr or "/" in address
        errs.add(f"spec.addresses[{i}]", subnet_error(address))
    if cidr and resolution not in ("NONE", "STATIC"):
        errs.add(
            "spec.addresses", "CIDR addresses are allowed only for NONE/STATIC resolution types"
        )

    names: set[str] = set()
    numbers: set[int] = set()
    for i, port in enumerate(spec.ports):
        path = f"spec.ports[{i}]"
        if port.name in names:
            errs.add(f"{path}.name", f'service entry port name "{port.name}" already defined')
        if port.number in numbers:
            errs.add(f"{path}.number", f"service entry port {port.number} already defined")
        names.add(port.name)
        numbers.add(port.number)
        if port.targetPort:
            errs.add(f"{path}.targetPort", port_error(port.targetPort))
        errs.add(f"{path}.name", port_name_error(port.name))
        errs.add(f"{path}.protocol", protocol_error(port.protocol))
        errs.add(f"{path}.number", port_error(port.number))

    if resolution == "NONE":
        if spec.endpoints:
            errs.add("spec.endpoints", "no endpoints should be provided for resolution type none")
    elif resolution == "STATIC":
        for i, ep in enumerate(spec.endpoints):
            workload_entry(errs, f"spec.endpoints[{i}]", ep, names, allow_fqdn=False)
    else:
        if not spec.endpoints:
            for i, host in enumerate(spec.hosts):
                if fqdn_error(host):
                    errs.add(
                        f"spec.hosts[{i}]",
                        "hosts must be FQDN if no endpoints are provided for resolution mode "
                        f"{resolution}",
                    )
        if resolution == "DNS_ROUND_ROBIN" and len(spec.endpoints) > 1:
            errs.add(
                "spec.endpoints",
                f"there must only be 0 or 1 endpoint for resolution mode {resolution}",
            )
        for i, ep in enumerate(spec.endpoints):
            path = f"spec.endpoints[{i}]"
            address = ep.address or ""
            if not is_ip(address) and fqdn_error(address):
                errs.add(
                    f"{path}.address",
                    f'endpoint address "{address}" is not a valid FQDN or an IP address',
                )
            check_labels(errs, f"{path}.labels", ep.labels)
            _endpoint_ports(errs, path, ep, names)

    if resolution != "NONE" and len(spec.hosts) > 1:
        for port in spec.ports:
            proto = protocol_of(port.protocol)
            if proto not in HTTP_PROTOCOLS and proto not in TLS_PROTOCOLS:
                errs.add("spec.hosts", "multiple hosts provided with non-HTTP, non-TLS ports")
                break
    check_export_to(errs, "spec.exportTo", namespace, spec.exportTo, service_entry=True)
    _unenforced(spec, errs)


def _unenforced(spec: ServiceEntrySpec, errs: Errors) -> None:
    """What Pilotfish accepts as Istio does but does not act on (warned, by field)."""
    for i, ep in enumerate(spec.endpoints):
        if ep.network:
            errs.warn(
                f"spec.endpoints[{i}].network",
                "not supported yet: multi-network meshes; the endpoint is dialled directly",
            )
        if (ep.address or "").startswith(UNIX_PREFIX):
            errs.add(
                f"spec.endpoints[{i}].address", "not supported yet: unix domain socket endpoints"
            )


def _endpoint_ports(
    errs: Errors, path: str, ep: WorkloadEntrySpec, service_ports: set[str] | None
) -> None:
    for name, number in ep.ports.items():
        p = f"{path}.ports[{name}]"
        if service_ports is not None and name not in service_ports:
            errs.add(p, f"endpoint port {number} is not defined by the service entry")
        errs.add(p, port_name_error(name))
        errs.add(p, port_error(number))


def workload_entry(
    errs: Errors,
    path: str,
    we: WorkloadEntrySpec,
    service_ports: set[str] | None,
    *,
    allow_fqdn: bool,
) -> None:
    """Istio validateWorkloadEntry."""
    address = we.address or ""
    if not address:
        if not we.network:
            errs.add(f"{path}.address", "address is required")
            return
        errs.warn(f"{path}.address", f'address is unset with network "{we.network}"')
    if address.startswith(UNIX_PREFIX):
        sock = address[len(UNIX_PREFIX) :]
        if not sock.startswith("@") and (not sock.startswith("/") or sock.endswith("/")):
            errs.add(f"{path}.address", f"{sock} is not an absolute path to a file")
        if we.ports:
            errs.add(f"{path}.ports", f"unix endpoint {address} must not include ports")
        if service_ports is not None and len(service_ports) != 1:
            errs.add(path, "exactly 1 service port required for unix endpoints")
    elif address and not is_ip(address):
        if not allow_fqdn:
            errs.add(f"{path}.address", f'endpoint address "{address}" is not a valid IP address')
        elif fqdn_error(address):
            errs.add(
                f"{path}.address",
                f'endpoint address "{address}" is not a valid FQDN or an IP address',
            )
    _endpoint_ports(errs, path, we, service_ports)
    check_labels(errs, f"{path}.labels", we.labels)
    if we.weight is not None and we.weight < 0:
        errs.add(f"{path}.weight", "weight must not be negative")


def validate_workload_entry(we: WorkloadEntry, errs: Errors, namespace: str) -> None:
    workload_entry(errs, "spec", we.spec, None, allow_fqdn=True)
    if we.spec.network:
        errs.warn(
            "spec.network",
            "not supported yet: multi-network meshes; the workload is dialled directly",
        )


def validate_workload_group(wg: WorkloadGroup, errs: Errors, namespace: str) -> None:
    """Istio validateWorkloadGroup: a template is required; its address is filled in by the
    agent that registers, so it must be empty; metadata labels are label-valid."""
    spec = wg.spec
    if spec.template is None:
        errs.add("spec.template", "template is required")
    else:
        if spec.template.address:
            errs.add(
                "spec.template.address",
                "address is set by the registering workload and must be empty in a template",
            )
        _endpoint_ports(errs, "spec.template", spec.template, None)
        check_labels(errs, "spec.template.labels", spec.template.labels)
        if spec.template.weight is not None and spec.template.weight < 0:
            errs.add("spec.template.weight", "weight must not be negative")
        if spec.template.network:
            errs.warn(
                "spec.template.network",
                "not supported yet: multi-network meshes; the workload is dialled directly",
            )
    if spec.metadata is not None:
        check_labels(errs, "spec.metadata.labels", spec.metadata.labels)
    if spec.probe is not None:
        _probe(errs, spec.probe)


def _probe(errs: Errors, probe: Any) -> None:
    """Istio's ReadinessProbe, as the agent runs it (pilotfish.agent.workload_health): fields
    the agent does not run are refused by name."""
    if not isinstance(probe, dict):
        errs.add("spec.probe", "must be a mapping")
        return
    for key in probe:
        if key not in PROBE_FIELDS:
            errs.add(f"spec.probe.{key}", "unknown or not supported probe field")
    for action, fields in PROBE_ACTION_FIELDS.items():
        spec = probe.get(action)
        if isinstance(spec, dict):
            for key in spec:
                if key not in fields:
                    errs.add(f"spec.probe.{action}.{key}", "unknown or not supported field")
    try:
        Probe.parse(probe)
    except ProbeError as exc:
        field, _, reason = str(exc).partition(": ")
        errs.add(f"spec.{field}", reason)
