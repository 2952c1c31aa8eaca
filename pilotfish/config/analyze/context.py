"""The AnalysisContext: every resource under analysis, typed, with the indexes analyzers need.

``build_context`` takes resource bodies (live config first, then files, so a file replaces the
live object with the same kind, namespace and name, as ``istioctl analyze -f`` does), runs
per-resource validation on each (its failures become IST0106/IST0133 messages) and indexes
what cross-resource analyzers look up:

- services by host: Kubernetes-shaped Services (``name.ns.svc.<domain>``) and ServiceEntry
  hosts (with ``exportTo`` visibility), each with its port numbers;
- workloads: Pods, Deployment pod templates, WorkloadEntries and the built-in ingress gateway
  (see :class:`AnalysisSettings`), each with its namespace and labels;
- gateways by ``ns/name``, DestinationRule subsets by ``(host FQDN, subset)``, Secrets,
  namespaces (the Namespace objects, the built-in ones and every namespace a resource uses).

Everything here is pure: no I/O, the same inputs give the same context.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel

from pilotfish.api import kinds
from pilotfish.api.core import Namespace, Secret, Service
from pilotfish.api.destinationrule import DestinationRule
from pilotfish.api.mesh import DEFAULT_DOMAIN_SUFFIX, export_to, service_fqdn, visible
from pilotfish.api.models import MODELS, parse_as, resource_ref
from pilotfish.api.networking import Gateway, ServiceEntry, WorkloadEntry
from pilotfish.api.workloads import Deployment, Pod
from pilotfish.config.analyze import messages as m
from pilotfish.config.analyze.messages import Message, MessageType, ResourceKey
from pilotfish.config.analyze.names import host_matches, labels_match, resolve_host
from pilotfish.config.validation import normalized_body, validate
from pilotfish.errors import PilotfishError, Source, ValidationError

__all__ = [
    "AnalysisContext",
    "AnalysisSettings",
    "Entry",
    "Input",
    "ServiceHost",
    "Workload",
    "build_context",
]

T = TypeVar("T", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class Workload:
    """Something that runs and that selectors may pick: a pod, a Deployment's pod template, a
    WorkloadEntry, or a built-in workload such as the local ingress gateway."""

    kind: str
    namespace: str
    name: str
    labels: Mapping[str, str]
    #: Ports of the Service in front of it, when known without Services (built-ins); None
    #: means "look at the Services that select it".
    service_ports: tuple[int, ...] | None = None
    #: Every Gateway port is reachable (a gateway in the host network, no Service between).
    every_port: bool = False
    #: The pod (or pod template) body, for container ports and annotations; None if unknown.
    body: Mapping[str, Any] | None = field(default=None, compare=False, hash=False)


#: The ingress gateway ``pilotfish up`` runs: ``istio: ingressgateway`` in ``istio-system``,
#: in the host network namespace. Gateway ports 80 and 443 are mapped to 8080 and 8443; any
#: other port is bound as written, so every Gateway port is reachable.
LOCAL_INGRESS_GATEWAY = Workload(
    kind="Gateway",
    namespace="istio-system",
    name="istio-ingressgateway",
    labels={"istio": "ingressgateway", "app": "istio-ingressgateway"},
    every_port=True,
)


@dataclass(frozen=True)
class AnalysisSettings:
    """What the analyzers assume about the mesh around the configuration."""

    domain_suffix: str = DEFAULT_DOMAIN_SUFFIX
    root_namespace: str = "istio-system"
    #: Workloads that exist without a resource describing them.
    builtin_workloads: tuple[Workload, ...] = (LOCAL_INGRESS_GATEWAY,)
    #: Namespaces that always exist (Pilotfish creates them).
    builtin_namespaces: tuple[str, ...] = ("default", "istio-system")
    #: Namespaces whose Services and workloads are not the mesh's (Istio skips them).
    system_namespaces: tuple[str, ...] = (
        "istio-system",
        "kube-system",
        "kube-public",
        "kube-node-lease",
        "local-path-storage",
    )
    #: ServiceEntry hosts get a VIP when they have no ``addresses`` (Pilotfish's registry does
    #: this for every non-wildcard host, as Istio's DNS auto-allocation does).
    auto_allocate_addresses: bool = True


@dataclass(frozen=True, slots=True)
class Input:
    """One resource body to analyze and where it came from (None: the live control plane)."""

    body: dict[str, Any]
    origin: Source | None = None
    #: Namespace for bodies that do not name one (``-n``, else ``default``).
    default_namespace: str = "default"


@dataclass(frozen=True, slots=True)
class Entry:
    """A resource under analysis: its key, typed model and origin."""

    key: ResourceKey
    obj: BaseModel
    origin: Source | None = None
    #: The body as read (nulls dropped for Kubernetes kinds), for fields the model does not type.
    body: Mapping[str, Any] = field(default_factory=dict, compare=False)

    @property
    def namespace(self) -> str:
        return self.key.namespace

    @property
    def name(self) -> str:
        return self.key.name

    def message(self, mtype: MessageType, *args: object, path: str = "") -> Message:
        """A finding of type ``mtype`` about this resource, at ``path``."""
        return Message(mtype, self.key, mtype.render(*args), path, self.origin)


@dataclass(frozen=True, slots=True)
class ServiceHost:
    """A host clients can address: a Service's FQDN or a ServiceEntry host."""

    hostname: str
    namespace: str
    ports: tuple[int, ...]
    source: ResourceKey
    #: exportTo of the host's ServiceEntry (``*``: every namespace).
    export_to: tuple[str, ...] = ("*",)

    def visible_from(self, namespace: str) -> bool:
        return visible(self.export_to, self.namespace, namespace)


@dataclass
class AnalysisContext:
    """Typed resources and indexes; analyzers read it and never change it."""

    settings: AnalysisSettings
    entries: list[Entry] = field(default_factory=list)
    by_kind: dict[str, list[Entry]] = field(default_factory=dict)
    namespaces: set[str] = field(default_factory=set)
    namespace_labels: dict[str, dict[str, str]] = field(default_factory=dict)
    services: dict[str, list[ServiceHost]] = field(default_factory=dict)
    wildcard_services: list[ServiceHost] = field(default_factory=list)
    workloads: list[Workload] = field(default_factory=list)
    gateways: dict[str, Entry] = field(default_factory=dict)
    subsets: set[tuple[str, str]] = field(default_factory=set)
    secrets: set[tuple[str, str]] = field(default_factory=set)

    # -- readers

    def of_kind(self, kind: str, model: type[T]) -> Iterator[tuple[Entry, T]]:
        """Every entry of ``kind`` with its model typed as ``model``."""
        for e in self.by_kind.get(kind, []):
            if isinstance(e.obj, model):
                yield e, e.obj

    def fqdn(self, host: str, namespace: str) -> str:
        return resolve_host(host, namespace, self.settings.domain_suffix)

    def find_service(self, host: str, from_namespace: str) -> ServiceHost | None:
        """The service a host written in ``from_namespace`` refers to, or None."""
        fqdn = self.fqdn(host, from_namespace)
        for s in self.services.get(fqdn, []):
            if s.visible_from(from_namespace):
                return s
        for s in self.wildcard_services:
            if host_matches(s.hostname, fqdn) and s.visible_from(from_namespace):
                return s
        return None

    def any_service_matches(self, pattern: str) -> bool:
        """A wildcard host (``*.example.com``) covers some known host."""
        return any(host_matches(pattern, h) for h in self.services) or any(
            host_matches(pattern, s.hostname) or host_matches(s.hostname, pattern)
            for s in self.wildcard_services
        )

    def workloads_selected(
        self, selector: Mapping[str, str], namespace: str | None
    ) -> list[Workload]:
        """Workloads whose labels match ``selector`` (in ``namespace``, or anywhere if None)."""
        return [
            w
            for w in self.workloads
            if (namespace is None or w.namespace == namespace) and labels_match(selector, w.labels)
        ]

    def is_system_namespace(self, namespace: str) -> bool:
        return namespace in self.settings.system_namespaces


# ---------------------------------------------------------------------------- building


def _key_of(body: dict[str, Any], default_namespace: str) -> ResourceKey:
    ref = resource_ref(body, default_namespace)
    namespaced = True
    with contextlib.suppress(PilotfishError):
        namespaced = kinds.by_kind(ref.kind).namespaced
    return ResourceKey(ref.kind, (ref.namespace or "") if namespaced else "", ref.name or "")


def _schema_messages(key: ResourceKey, origin: Source | None, err: PilotfishError) -> list[Message]:
    t = m.SCHEMA_VALIDATION_ERROR
    if isinstance(err, ValidationError):
        return [Message(t, key, t.render(str(fe)), fe.path, origin) for fe in err.errors]
    return [Message(t, key, t.render(str(err)), "", origin)]


def _drop_nulls(value: Any) -> Any:
    """``value`` without null map entries, recursively: Kubernetes reads ``args: null`` as an
    absent field."""
    if isinstance(value, dict):
        return {k: _drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_nulls(v) for v in value]
    return value


def _kubernetes_kind(body: Mapping[str, Any]) -> bool:
    """A built-in Kubernetes kind (``v1``, ``apps/v1``...): its API server drops nulls."""
    api = str(body.get("apiVersion") or "")
    group = api.rpartition("/")[0]
    return "." not in group


def lenient(inp: Input) -> Input:
    """``inp`` read as Kubernetes reads its kind (nulls dropped for built-in kinds)."""
    if not _kubernetes_kind(inp.body):
        return inp
    return Input(_drop_nulls(inp.body), inp.origin, inp.default_namespace)


def _typed(inp: Input) -> tuple[BaseModel | None, list[Message], ResourceKey]:
    """The typed model of a body (None when even the schema fails) and its schema messages."""
    key = _key_of(inp.body, inp.default_namespace)
    try:
        v = validate(inp.body, source=inp.origin, default_namespace=inp.default_namespace)
    except PilotfishError as err:
        msgs = _schema_messages(key, inp.origin, err)
        model = MODELS.get(key.kind)
        if model is None or not isinstance(err, ValidationError):
            return None, msgs, key
        try:
            info = kinds.by_kind(key.kind)
            obj = parse_as(model, normalized_body(info, inp.body, inp.default_namespace))
        except PilotfishError:
            return None, msgs, key
        return obj, msgs, key
    warn = m.SCHEMA_WARNING
    # Istio's validation warnings; not the fields Pilotfish's runtime does not apply.
    istio = [w for w in v.warnings if w not in v.unapplied]
    msgs = [Message(warn, key, warn.render(str(w)), w.path, inp.origin) for w in istio]
    return v.obj, msgs, key


def _index(ctx: AnalysisContext, e: Entry) -> None:
    s = ctx.settings
    obj = e.obj
    if e.namespace:
        ctx.namespaces.add(e.namespace)
    if isinstance(obj, Namespace):
        ctx.namespaces.add(e.name)
        ctx.namespace_labels[e.name] = dict(obj.metadata.labels)
    elif isinstance(obj, Service):
        host = service_fqdn(e.name, e.namespace, s.domain_suffix)
        ports = tuple(p.port for p in obj.spec.ports)
        ctx.services.setdefault(host, []).append(ServiceHost(host, e.namespace, ports, e.key))
    elif isinstance(obj, ServiceEntry):
        ports = tuple(p.number for p in obj.spec.ports)
        exported = export_to(obj.spec.exportTo)
        for h in obj.spec.hosts:
            host = resolve_host(h, e.namespace, s.domain_suffix)
            sh = ServiceHost(host, e.namespace, ports, e.key, exported)
            if host.startswith("*"):
                ctx.wildcard_services.append(sh)
            else:
                ctx.services.setdefault(host, []).append(sh)
    elif isinstance(obj, Pod):
        labels = dict(obj.metadata.labels)
        ctx.workloads.append(Workload("Pod", e.namespace, e.name, labels, body=e.body))
    elif isinstance(obj, Deployment):
        labels = dict(obj.spec.template.metadata.labels)
        template = e.body.get("spec", {}).get("template", {}) if e.body else {}
        ctx.workloads.append(Workload("Deployment", e.namespace, e.name, labels, body=template))
    elif isinstance(obj, WorkloadEntry):
        ctx.workloads.append(Workload("WorkloadEntry", e.namespace, e.name, dict(obj.spec.labels)))
    elif isinstance(obj, Gateway):
        ctx.gateways[f"{e.namespace}/{e.name}"] = e
    elif isinstance(obj, DestinationRule):
        host = resolve_host(obj.spec.host, e.namespace, s.domain_suffix)
        for subset in obj.spec.subsets:
            ctx.subsets.add((host, subset.name))
    elif isinstance(obj, Secret):
        ctx.secrets.add((e.namespace, e.name))


def _untyped_workload(ctx: AnalysisContext, key: ResourceKey, body: Mapping[str, Any]) -> None:
    """A Pod or Deployment whose body the schema refused still runs (Kubernetes drops what it
    does not know): its labels still count for selectors, so no selector is reported as
    matching nothing because of a field elsewhere in the pod."""
    if key.kind == "Pod":
        meta = body.get("metadata")
        template: Any = body
    elif key.kind == "Deployment":
        spec = body.get("spec")
        template = spec.get("template") if isinstance(spec, dict) else None
        meta = template.get("metadata") if isinstance(template, dict) else None
    else:
        return
    labels = meta.get("labels") if isinstance(meta, dict) else None
    if not isinstance(labels, dict):
        labels = {}
    clean = {str(k): str(v) for k, v in labels.items() if v is not None}
    if key.namespace:
        ctx.namespaces.add(key.namespace)
    body_of = template if isinstance(template, dict) else None
    ctx.workloads.append(Workload(key.kind, key.namespace, key.name, clean, body=body_of))


def build_context(
    inputs: Iterable[Input], settings: AnalysisSettings | None = None
) -> tuple[AnalysisContext, list[Message]]:
    """Type and index ``inputs`` (later ones replace earlier ones with the same key).

    Returns the context and the per-resource schema messages (IST0106 errors, IST0133
    warnings) of the resources finally kept.
    """
    settings = settings or AnalysisSettings()
    kept: dict[ResourceKey, tuple[BaseModel | None, list[Message], Input]] = {}
    for raw in inputs:
        inp = lenient(raw)
        obj, msgs, key = _typed(inp)
        kept.pop(key, None)  # keep the order of the last writer
        kept[key] = (obj, msgs, inp)
    ctx = AnalysisContext(settings)
    ctx.namespaces.update(settings.builtin_namespaces)
    ctx.workloads.extend(settings.builtin_workloads)
    schema: list[Message] = []
    for key, (obj, msgs, inp) in kept.items():
        schema.extend(msgs)
        if obj is None:
            _untyped_workload(ctx, key, inp.body)
            continue
        entry = Entry(key, obj, inp.origin, inp.body)
        ctx.entries.append(entry)
        ctx.by_kind.setdefault(key.kind, []).append(entry)
        _index(ctx, entry)
    return ctx, schema
