"""Kubernetes workload kinds: Deployment (apps/v1) and Pod, with the pod spec they share.

The local runtime runs a container's ``command``/``args`` with ``env``, ``workingDir`` and
``ports``; the other fields (image, volumes, probes, security context...) are accepted so
that real manifests such as Istio's ``bookinfo.yaml`` load unchanged. Rarely used nested
Kubernetes objects (affinity, tolerations, volume sources other than the common ones) are
kept as free-form mappings.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import Field

from pilotfish.api.core import LocalObjectReference
from pilotfish.api.meta import IntOrString, LabelSelector, Model, Resource, TemplateMeta

Quantity = int | float | str

# --- containers ------------------------------------------------------------------------------


class ContainerPort(Model):
    name: str | None = None
    containerPort: int = 0
    protocol: str | None = None
    hostPort: int | None = None
    hostIP: str | None = None


#: The ``fieldRef.fieldPath`` values the local runtime fills in an environment variable, with
#: ``metadata.labels['KEY']`` (:data:`FIELD_REF_LABEL`); others are warned about at apply.
FIELD_REF_PATHS = (
    "metadata.name",
    "metadata.namespace",
    "status.podIP",
    "spec.serviceAccountName",
    "spec.nodeName",
)
FIELD_REF_LABEL = "metadata.labels['"


def field_ref_supported(path: str) -> bool:
    """Whether the local runtime fills ``fieldRef.fieldPath: path``. Pure."""
    return path in FIELD_REF_PATHS or (path.startswith(FIELD_REF_LABEL) and path.endswith("']"))


class ObjectFieldSelector(Model):
    fieldPath: str
    apiVersion: str | None = None


class KeySelector(Model):
    """``secretKeyRef`` / ``configMapKeyRef``."""

    name: str | None = None
    key: str
    optional: bool | None = None


class ResourceFieldSelector(Model):
    resource: str
    containerName: str | None = None
    divisor: Quantity | None = None


class EnvVarSource(Model):
    fieldRef: ObjectFieldSelector | None = None
    resourceFieldRef: ResourceFieldSelector | None = None
    secretKeyRef: KeySelector | None = None
    configMapKeyRef: KeySelector | None = None


class EnvVar(Model):
    name: str
    value: str | None = None
    valueFrom: EnvVarSource | None = None


class EnvFromSource(Model):
    prefix: str | None = None
    configMapRef: dict[str, Any] | None = None
    secretRef: dict[str, Any] | None = None


class ResourceRequirements(Model):
    limits: dict[str, Quantity] = Field(default_factory=dict)
    requests: dict[str, Quantity] = Field(default_factory=dict)
    claims: list[dict[str, Any]] = Field(default_factory=list)


class VolumeMount(Model):
    name: str
    mountPath: str
    readOnly: bool | None = None
    subPath: str | None = None
    subPathExpr: str | None = None
    mountPropagation: str | None = None
    recursiveReadOnly: str | None = None


class HTTPHeader(Model):
    name: str
    value: str


class HTTPGetAction(Model):
    path: str | None = None
    port: IntOrString
    host: str | None = None
    scheme: str | None = None
    httpHeaders: list[HTTPHeader] = Field(default_factory=list)


class TCPSocketAction(Model):
    port: IntOrString
    host: str | None = None


class ExecAction(Model):
    command: list[str] = Field(default_factory=list)


class GRPCAction(Model):
    port: int
    service: str | None = None


class Probe(Model):
    httpGet: HTTPGetAction | None = None
    tcpSocket: TCPSocketAction | None = None
    exec: ExecAction | None = None
    grpc: GRPCAction | None = None
    initialDelaySeconds: int | None = None
    periodSeconds: int | None = None
    timeoutSeconds: int | None = None
    successThreshold: int | None = None
    failureThreshold: int | None = None
    terminationGracePeriodSeconds: int | None = None


class LifecycleHandler(Model):
    httpGet: HTTPGetAction | None = None
    tcpSocket: TCPSocketAction | None = None
    exec: ExecAction | None = None
    sleep: dict[str, Any] | None = None


class Lifecycle(Model):
    postStart: LifecycleHandler | None = None
    preStop: LifecycleHandler | None = None
    stopSignal: str | None = None


class Capabilities(Model):
    add: list[str] = Field(default_factory=list)
    drop: list[str] = Field(default_factory=list)


class SecurityContext(Model):
    """Container ``securityContext``."""

    runAsUser: int | None = None
    runAsGroup: int | None = None
    runAsNonRoot: bool | None = None
    privileged: bool | None = None
    allowPrivilegeEscalation: bool | None = None
    readOnlyRootFilesystem: bool | None = None
    capabilities: Capabilities | None = None
    procMount: str | None = None
    seccompProfile: dict[str, Any] | None = None
    seLinuxOptions: dict[str, Any] | None = None
    appArmorProfile: dict[str, Any] | None = None
    windowsOptions: dict[str, Any] | None = None


class PodSecurityContext(Model):
    runAsUser: int | None = None
    runAsGroup: int | None = None
    runAsNonRoot: bool | None = None
    fsGroup: int | None = None
    fsGroupChangePolicy: str | None = None
    supplementalGroups: list[int] = Field(default_factory=list)
    supplementalGroupsPolicy: str | None = None
    sysctls: list[dict[str, Any]] = Field(default_factory=list)
    seccompProfile: dict[str, Any] | None = None
    seLinuxOptions: dict[str, Any] | None = None
    appArmorProfile: dict[str, Any] | None = None
    windowsOptions: dict[str, Any] | None = None
    seLinuxChangePolicy: str | None = None


class Container(Model):
    name: str = ""
    image: str | None = None
    imagePullPolicy: str | None = None
    command: list[str] = Field(default_factory=list)
    args: list[str] = Field(default_factory=list)
    workingDir: str | None = None
    ports: list[ContainerPort] = Field(default_factory=list)
    env: list[EnvVar] = Field(default_factory=list)
    envFrom: list[EnvFromSource] = Field(default_factory=list)
    resources: ResourceRequirements | None = None
    volumeMounts: list[VolumeMount] = Field(default_factory=list)
    volumeDevices: list[dict[str, Any]] = Field(default_factory=list)
    readinessProbe: Probe | None = None
    livenessProbe: Probe | None = None
    startupProbe: Probe | None = None
    lifecycle: Lifecycle | None = None
    securityContext: SecurityContext | None = None
    terminationMessagePath: str | None = None
    terminationMessagePolicy: str | None = None
    restartPolicy: str | None = None
    stdin: bool | None = None
    stdinOnce: bool | None = None
    tty: bool | None = None


# --- volumes ---------------------------------------------------------------------------------


class KeyToPath(Model):
    key: str
    path: str
    mode: int | None = None


class SecretVolumeSource(Model):
    secretName: str | None = None
    items: list[KeyToPath] = Field(default_factory=list)
    defaultMode: int | None = None
    optional: bool | None = None


class ConfigMapVolumeSource(Model):
    name: str | None = None
    items: list[KeyToPath] = Field(default_factory=list)
    defaultMode: int | None = None
    optional: bool | None = None


class EmptyDirVolumeSource(Model):
    medium: str | None = None
    sizeLimit: Quantity | None = None


class HostPathVolumeSource(Model):
    path: str
    type: str | None = None


class Volume(Model):
    name: str
    emptyDir: EmptyDirVolumeSource | None = None
    secret: SecretVolumeSource | None = None
    configMap: ConfigMapVolumeSource | None = None
    hostPath: HostPathVolumeSource | None = None
    persistentVolumeClaim: dict[str, Any] | None = None
    projected: dict[str, Any] | None = None
    downwardAPI: dict[str, Any] | None = None
    csi: dict[str, Any] | None = None
    ephemeral: dict[str, Any] | None = None
    nfs: dict[str, Any] | None = None
    image: dict[str, Any] | None = None


# --- pod spec --------------------------------------------------------------------------------


class HostAlias(Model):
    ip: str
    hostnames: list[str] = Field(default_factory=list)


class PodSpec(Model):
    containers: list[Container] = Field(default_factory=list)
    initContainers: list[Container] = Field(default_factory=list)
    serviceAccountName: str | None = None
    serviceAccount: str | None = None
    automountServiceAccountToken: bool | None = None
    nodeName: str | None = None
    nodeSelector: dict[str, str] = Field(default_factory=dict)
    hostname: str | None = None
    subdomain: str | None = None
    hostNetwork: bool | None = None
    hostPID: bool | None = None
    hostIPC: bool | None = None
    hostAliases: list[HostAlias] = Field(default_factory=list)
    volumes: list[Volume] = Field(default_factory=list)
    securityContext: PodSecurityContext | None = None
    restartPolicy: str | None = None
    terminationGracePeriodSeconds: int | None = None
    activeDeadlineSeconds: int | None = None
    dnsPolicy: str | None = None
    dnsConfig: dict[str, Any] | None = None
    imagePullSecrets: list[LocalObjectReference] = Field(default_factory=list)
    affinity: dict[str, Any] | None = None
    tolerations: list[dict[str, Any]] = Field(default_factory=list)
    topologySpreadConstraints: list[dict[str, Any]] = Field(default_factory=list)
    priorityClassName: str | None = None
    priority: int | None = None
    schedulerName: str | None = None
    runtimeClassName: str | None = None
    enableServiceLinks: bool | None = None
    shareProcessNamespace: bool | None = None
    preemptionPolicy: str | None = None
    readinessGates: list[dict[str, Any]] = Field(default_factory=list)
    setHostnameAsFQDN: bool | None = None
    overhead: dict[str, Quantity] = Field(default_factory=dict)
    os: dict[str, Any] | None = None
    hostUsers: bool | None = None


class PodTemplateSpec(Model):
    metadata: TemplateMeta = Field(default_factory=TemplateMeta)
    spec: PodSpec = Field(default_factory=PodSpec)


# --- Deployment ------------------------------------------------------------------------------


class RollingUpdateDeployment(Model):
    maxSurge: IntOrString | None = None
    maxUnavailable: IntOrString | None = None


class DeploymentStrategy(Model):
    type: str | None = None
    rollingUpdate: RollingUpdateDeployment | None = None


class DeploymentSpec(Model):
    replicas: int | None = None
    selector: LabelSelector = Field(default_factory=LabelSelector)
    template: PodTemplateSpec = Field(default_factory=PodTemplateSpec)
    strategy: DeploymentStrategy | None = None
    minReadySeconds: int | None = None
    revisionHistoryLimit: int | None = None
    progressDeadlineSeconds: int | None = None
    paused: bool | None = None


class Deployment(Resource):
    spec: DeploymentSpec = Field(default_factory=DeploymentSpec)
    status: dict[str, Any] | None = None


# --- Pod -------------------------------------------------------------------------------------


class PodCondition(Model):
    type: str
    status: str
    reason: str | None = None
    message: str | None = None
    lastProbeTime: str | None = None
    lastTransitionTime: str | None = None


class ContainerStatus(Model):
    name: str
    ready: bool = False
    started: bool | None = None
    restartCount: int = 0
    image: str | None = None
    imageID: str | None = None
    containerID: str | None = None
    state: dict[str, Any] | None = None
    lastState: dict[str, Any] | None = None


class PodIP(Model):
    ip: str


class PodStatus(Model):
    phase: str | None = None
    podIP: str | None = None
    podIPs: list[PodIP] = Field(default_factory=list)
    hostIP: str | None = None
    startTime: str | None = None
    message: str | None = None
    reason: str | None = None
    qosClass: str | None = None
    conditions: list[PodCondition] = Field(default_factory=list)
    containerStatuses: list[ContainerStatus] = Field(default_factory=list)
    initContainerStatuses: list[ContainerStatus] = Field(default_factory=list)


class Pod(Resource):
    spec: PodSpec = Field(default_factory=PodSpec)
    status: PodStatus | None = None

    @property
    def ready(self) -> bool:
        """True when the ``Ready`` condition is ``True``, or (without conditions) every
        container reports ready."""
        if self.status is None:
            return False
        for cond in self.status.conditions:
            if cond.type == "Ready":
                return cond.status == "True"
        statuses = self.status.containerStatuses
        return bool(statuses) and all(s.ready for s in statuses)


def pod_target_port(port: Mapping[str, Any], pod: Mapping[str, Any]) -> int | None:
    """The pod port a Service port (a ``spec.ports`` item) reaches on ``pod`` (a Pod body), as
    Kubernetes resolves ``targetPort``: unset is the service port, a number is itself, a name is
    the container port of that name (``None`` when the pod has none). Pure."""
    target = port.get("targetPort")
    if target in (None, ""):
        return int(port["port"])
    if isinstance(target, int) or str(target).isdigit():
        return int(target)
    for c in (pod.get("spec") or {}).get("containers") or []:
        for p in c.get("ports") or []:
            if p.get("name") == target and p.get("containerPort"):
                return int(p["containerPort"])
    return None


# --- locality --------------------------------------------------------------------------------

#: The labels a workload's locality is read from, as Istio reads them (Kubernetes puts the
#: region and zone on nodes; without nodes, Pilotfish reads them from the workload itself).
REGION_LABEL = "topology.kubernetes.io/region"
ZONE_LABEL = "topology.kubernetes.io/zone"
SUBZONE_LABEL = "topology.istio.io/subzone"
#: Istio's explicit locality label, ``region.zone.subzone``.
LOCALITY_LABEL = "istio-locality"


def locality_from_labels(labels: Mapping[str, str], explicit: str = "") -> str:
    """A workload's locality as ``region/zone/subzone`` (trailing parts may be empty; "" when
    unknown): ``explicit`` (a WorkloadEntry's ``locality``) first, then the ``istio-locality``
    label, then the topology labels (region, zone, subzone)."""
    if explicit:
        return explicit
    if labels.get(LOCALITY_LABEL):
        return labels[LOCALITY_LABEL].replace(".", "/")
    parts = [labels.get(k, "") for k in (REGION_LABEL, ZONE_LABEL, SUBZONE_LABEL)]
    return "/".join(parts).rstrip("/")
