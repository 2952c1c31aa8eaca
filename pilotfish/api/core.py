"""Kubernetes core kinds in their usual shape: Namespace, Service, ServiceAccount, Secret."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from pilotfish.api.meta import IntOrString, Model, Resource

# --- Namespace -------------------------------------------------------------------------------


class NamespaceSpec(Model):
    finalizers: list[str] = Field(default_factory=list)


class Namespace(Resource):
    spec: NamespaceSpec | None = None
    status: dict[str, Any] | None = None


# --- Service ---------------------------------------------------------------------------------


class ServicePort(Model):
    name: str | None = None
    protocol: str | None = None
    appProtocol: str | None = None
    port: int = 0
    targetPort: IntOrString | None = None
    nodePort: int | None = None


class ClientIPConfig(Model):
    timeoutSeconds: int | None = None


class SessionAffinityConfig(Model):
    clientIP: ClientIPConfig | None = None


class ServiceSpec(Model):
    type: Literal["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"] | None = None
    selector: dict[str, str] = Field(default_factory=dict)
    ports: list[ServicePort] = Field(default_factory=list)
    clusterIP: str | None = None
    clusterIPs: list[str] = Field(default_factory=list)
    externalName: str | None = None
    externalIPs: list[str] = Field(default_factory=list)
    sessionAffinity: str | None = None
    sessionAffinityConfig: SessionAffinityConfig | None = None
    loadBalancerIP: str | None = None
    loadBalancerSourceRanges: list[str] = Field(default_factory=list)
    loadBalancerClass: str | None = None
    allocateLoadBalancerNodePorts: bool | None = None
    externalTrafficPolicy: str | None = None
    internalTrafficPolicy: str | None = None
    healthCheckNodePort: int | None = None
    publishNotReadyAddresses: bool | None = None
    ipFamilies: list[str] = Field(default_factory=list)
    ipFamilyPolicy: str | None = None
    trafficDistribution: str | None = None


class Service(Resource):
    spec: ServiceSpec = Field(default_factory=ServiceSpec)
    status: dict[str, Any] | None = None


# --- ServiceAccount --------------------------------------------------------------------------


class ObjectReference(Model):
    name: str | None = None
    namespace: str | None = None
    kind: str | None = None
    apiVersion: str | None = None
    uid: str | None = None
    fieldPath: str | None = None
    resourceVersion: str | None = None


class LocalObjectReference(Model):
    name: str | None = None


class ServiceAccount(Resource):
    secrets: list[ObjectReference] = Field(default_factory=list)
    imagePullSecrets: list[LocalObjectReference] = Field(default_factory=list)
    automountServiceAccountToken: bool | None = None


# --- Event -----------------------------------------------------------------------------------


class EventSource(Model):
    component: str | None = None
    host: str | None = None


class Event(Resource):
    """What happened to an object (core/v1 Event): written by the local runtime when a pod
    cannot start or keeps failing; ``pilotfish get events`` and ``describe pod`` show them."""

    involvedObject: ObjectReference
    reason: str = ""
    message: str = ""
    type: Literal["Normal", "Warning"] = "Normal"
    count: int = 1
    firstTimestamp: str | None = None
    lastTimestamp: str | None = None
    source: EventSource | None = None


# --- Secret ----------------------------------------------------------------------------------


class Secret(Resource):
    """``data`` values are base64; ``stringData`` values are plain text (write-only in
    Kubernetes; kept here as written)."""

    type: str | None = None
    data: dict[str, str] = Field(default_factory=dict)
    stringData: dict[str, str] = Field(default_factory=dict)
    immutable: bool | None = None
