"""Kubernetes core kinds: the apiserver's checks that matter for a mesh (Namespace, Service,
Secret, Deployment, Pod), in Kubernetes' wording."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from collections.abc import Sequence

from pilotfish.api.core import Event, Namespace, Secret, Service
from pilotfish.api.proxy_annotation import proxy_config
from pilotfish.api.workloads import (
    Container,
    Deployment,
    DeploymentSpec,
    Pod,
    PodSpec,
    field_ref_supported,
)
from pilotfish.config.validation.common import Errors, check_labels, is_dns1123_label

_IANA_SVC_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
_CONFIG_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
_PORT_RANGE = "must be between 1 and 65535, inclusive"
SERVICE_PROTOCOLS = ("SCTP", "TCP", "UDP")


def validate_nothing(obj: object, errs: Errors, namespace: str) -> None:
    """Kinds whose schema is all there is to check (ServiceAccount)."""


def validate_namespace(ns: Namespace, errs: Errors, namespace: str) -> None:
    """Namespace names are checked with metadata (RFC 1123 labels)."""


def port_name_error(name: str) -> str | None:
    """Kubernetes IsValidPortName (IANA service names)."""
    if len(name) > 15:
        return f'Invalid value: "{name}": must be no more than 15 characters'
    if not _IANA_SVC_NAME.match(name):
        return (
            f'Invalid value: "{name}": must contain only alpha-numeric characters (a-z, 0-9), '
            "and hyphens (-)"
        )
    if "--" in name:
        return f'Invalid value: "{name}": must not contain consecutive hyphens'
    if not any(c.isalpha() for c in name):
        return f'Invalid value: "{name}": must contain at least one letter (a-z)'
    return None


def _port_number(errs: Errors, path: str, value: int) -> None:
    if not 1 <= value <= 65535:
        errs.add(path, f"Invalid value: {value}: {_PORT_RANGE}")


def validate_service(svc: Service, errs: Errors, namespace: str) -> None:
    spec = svc.spec
    headless = spec.clusterIP == "None"
    if not spec.ports and spec.type != "ExternalName" and not headless:
        errs.add("spec.ports", "Required value")
    if spec.type == "ExternalName" and not spec.externalName:
        errs.add("spec.externalName", "Required value")
    names: set[str] = set()
    numbers: set[tuple[int, str]] = set()
    for i, port in enumerate(spec.ports):
        path = f"spec.ports[{i}]"
        if len(spec.ports) > 1 and not port.name:
            errs.add(f"{path}.name", "Required value")
        if port.name:
            if not is_dns1123_label(port.name):
                errs.add(
                    f"{path}.name",
                    f'Invalid value: "{port.name}": a lowercase RFC 1123 label is required',
                )
            if port.name in names:
                errs.add(f"{path}.name", f'Duplicate value: "{port.name}"')
            names.add(port.name)
        _port_number(errs, f"{path}.port", port.port)
        protocol = port.protocol or "TCP"
        if protocol not in SERVICE_PROTOCOLS:
            errs.add(
                f"{path}.protocol",
                f'Unsupported value: "{protocol}": supported values: "SCTP", "TCP", "UDP"',
            )
        if (port.port, protocol) in numbers:
            errs.add(f"{path}", f'Duplicate value: {{"port":{port.port},"protocol":"{protocol}"}}')
        numbers.add((port.port, protocol))
        target = port.targetPort
        if isinstance(target, int):
            _port_number(errs, f"{path}.targetPort", target)
        elif isinstance(target, str):
            errs.add(f"{path}.targetPort", port_name_error(target))
        if port.nodePort is not None and port.nodePort != 0:
            _port_number(errs, f"{path}.nodePort", port.nodePort)
    check_labels(errs, "spec.selector", spec.selector)
    if headless:
        errs.warn(
            "spec.clusterIP",
            'accepted but not applied by Pilotfish: a headless Service ("None") is not resolved '
            "to its pods' addresses",
        )


def validate_secret(secret: Secret, errs: Errors, namespace: str) -> None:
    for field in ("data", "stringData"):
        for key in getattr(secret, field):
            if len(key) > 253 or not _CONFIG_KEY.match(key):
                errs.add(
                    f"{field}[{key}]",
                    f'Invalid value: "{key}": a valid config key must consist of alphanumeric '
                    "characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or "
                    "'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
                )
    for key, value in secret.data.items():
        try:
            base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError) as exc:
            errs.add(f"data[{key}]", f"illegal base64 data: {exc}")


def _containers(errs: Errors, path: str, containers: Sequence[Container], required: bool) -> None:
    if required and not containers:
        errs.add(path, "Required value")
    names: set[str] = set()
    for i, c in enumerate(containers):
        cpath = f"{path}[{i}]"
        if not c.name:
            errs.add(f"{cpath}.name", "Required value")
        elif not is_dns1123_label(c.name):
            errs.add(
                f"{cpath}.name",
                f'Invalid value: "{c.name}": a lowercase RFC 1123 label is required',
            )
        elif c.name in names:
            errs.add(f"{cpath}.name", f'Duplicate value: "{c.name}"')
        names.add(c.name)
        port_names: set[str] = set()
        for j, p in enumerate(c.ports):
            ppath = f"{cpath}.ports[{j}]"
            _port_number(errs, f"{ppath}.containerPort", p.containerPort)
            if p.name:
                errs.add(f"{ppath}.name", port_name_error(p.name))
                if p.name in port_names:
                    errs.add(f"{ppath}.name", f'Duplicate value: "{p.name}"')
                port_names.add(p.name)
            if p.protocol is not None and p.protocol not in SERVICE_PROTOCOLS:
                errs.add(
                    f"{ppath}.protocol",
                    f'Unsupported value: "{p.protocol}": supported values: "SCTP", "TCP", "UDP"',
                )
        for j, env in enumerate(c.env):
            epath = f"{cpath}.env[{j}]"
            if not env.name:
                errs.add(f"{epath}.name", "Required value")
            elif not _ENV_NAME.match(env.name):
                errs.add(
                    f"{epath}.name",
                    f'Invalid value: "{env.name}": a valid environment variable name must '
                    "consist of alphabetic characters, digits, '_', '-', or '.', and must not "
                    "start with a digit",
                )
            if env.value and env.valueFrom is not None:
                errs.add(
                    f"{epath}.valueFrom",
                    "Invalid value: may not be specified when `value` is not empty",
                )
            ref = env.valueFrom.fieldRef if env.valueFrom is not None else None
            if ref is not None and not field_ref_supported(ref.fieldPath):
                errs.warn(
                    f"{epath}.valueFrom.fieldRef.fieldPath",
                    f'accepted but not applied by Pilotfish: "{ref.fieldPath}" is not filled by '
                    "the local runtime (the variable is set to an empty string)",
                )
        for j, vm in enumerate(c.volumeMounts):
            if not vm.mountPath:
                errs.add(f"{cpath}.volumeMounts[{j}].mountPath", "Required value")


def pod_spec(errs: Errors, path: str, spec: PodSpec) -> None:
    _containers(errs, f"{path}.containers", spec.containers, required=True)
    _containers(errs, f"{path}.initContainers", spec.initContainers, required=False)
    volumes: set[str] = set()
    for i, v in enumerate(spec.volumes):
        if v.name in volumes:
            errs.add(f"{path}.volumes[{i}].name", f'Duplicate value: "{v.name}"')
        volumes.add(v.name)
    for c_field in ("containers", "initContainers"):
        for i, c in enumerate(getattr(spec, c_field)):
            for j, vm in enumerate(c.volumeMounts):
                if vm.name not in volumes:
                    errs.add(
                        f"{path}.{c_field}[{i}].volumeMounts[{j}].name", f'Not found: "{vm.name}"'
                    )
    sa = spec.serviceAccountName
    if sa and not re.match(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", sa):
        errs.add(
            f"{path}.serviceAccountName",
            f'Invalid value: "{sa}": a lowercase RFC 1123 subdomain is required',
        )
    for i, alias in enumerate(spec.hostAliases):
        try:
            ipaddress.ip_address(alias.ip)
        except ValueError:
            errs.add(
                f"{path}.hostAliases[{i}].ip",
                f'Invalid value: "{alias.ip}": must be a valid IP address',
            )
    if spec.terminationGracePeriodSeconds is not None and spec.terminationGracePeriodSeconds < 0:
        errs.add(f"{path}.terminationGracePeriodSeconds", "must be greater than or equal to 0")


def validate_deployment(d: Deployment, errs: Errors, namespace: str) -> None:
    spec = d.spec
    if spec.replicas is not None and spec.replicas < 0:
        errs.add(
            "spec.replicas", f"Invalid value: {spec.replicas}: must be greater than or equal to 0"
        )
    selector = spec.selector
    if not selector.matchLabels and not selector.matchExpressions:
        errs.add("spec.selector", "Required value")
    check_labels(errs, "spec.selector.matchLabels", selector.matchLabels)
    labels = spec.template.metadata.labels
    check_labels(errs, "spec.template.metadata.labels", labels)
    if any(labels.get(k) != v for k, v in selector.matchLabels.items()):
        shown = ",".join(f"{k}:{v}" for k, v in labels.items())
        errs.add(
            "spec.template.metadata.labels",
            f"Invalid value: map[{shown}]: `selector` does not match template `labels`",
        )
    for i, expr in enumerate(selector.matchExpressions):
        if expr.operator not in ("In", "NotIn", "Exists", "DoesNotExist"):
            errs.add(
                f"spec.selector.matchExpressions[{i}].operator",
                f'Unsupported value: "{expr.operator}": supported values: "In", "NotIn", '
                '"Exists", "DoesNotExist"',
            )
    _strategy(errs, spec)
    _proxy_config(errs, spec.template.metadata.annotations, "spec.template.metadata")
    pod_spec(errs, "spec.template.spec", spec.template.spec)


def _proxy_config(errs: Errors, annotations: dict[str, str], metadata: str) -> None:
    for path, message in proxy_config(annotations, metadata).problems:
        if "not applied" in message:
            errs.warn(path, message)
        else:
            errs.add(path, message)


def _strategy(errs: Errors, spec: DeploymentSpec) -> None:
    """``spec.strategy`` as Kubernetes checks it (the local runtime rolls out by it)."""
    strategy = spec.strategy
    if strategy is None:
        return
    kind = strategy.type or "RollingUpdate"
    if kind not in ("RollingUpdate", "Recreate"):
        errs.add(
            "spec.strategy.type",
            f'Unsupported value: "{kind}": supported values: "Recreate", "RollingUpdate"',
        )
        return
    rolling = strategy.rollingUpdate
    if rolling is None:
        return
    if kind == "Recreate":
        errs.add("spec.strategy.rollingUpdate", "Forbidden: may not be specified when strategy "
                 "`type` is 'Recreate'")  # fmt: skip
        return
    zero = []
    for name in ("maxSurge", "maxUnavailable"):
        value = getattr(rolling, name)
        if value is None:
            continue
        text = str(value)
        number = text[:-1] if text.endswith("%") else text
        if not number.isdigit():
            errs.add(f"spec.strategy.rollingUpdate.{name}",
                     f'Invalid value: "{text}": must be a non-negative integer or a '
                     "percentage (e.g. 25%)")  # fmt: skip
        elif int(number) == 0:
            zero.append(name)
        elif text.endswith("%") and int(number) > 100 and name == "maxUnavailable":
            errs.add(f"spec.strategy.rollingUpdate.{name}",
                     f'Invalid value: "{text}": must not be greater than 100%')  # fmt: skip
    if len(zero) == 2:
        errs.add("spec.strategy.rollingUpdate.maxUnavailable",
                 "Invalid value: 0: may not be 0 when `maxSurge` is 0")  # fmt: skip


def validate_event(event: Event, errs: Errors, namespace: str) -> None:
    obj = event.involvedObject
    if not obj.kind:
        errs.add("involvedObject.kind", "Required value")
    if not obj.name:
        errs.add("involvedObject.name", "Required value")
    if not event.reason:
        errs.add("reason", "Required value")


def validate_pod(pod: Pod, errs: Errors, namespace: str) -> None:
    _proxy_config(errs, pod.metadata.annotations, "metadata")
    pod_spec(errs, "spec", pod.spec)
