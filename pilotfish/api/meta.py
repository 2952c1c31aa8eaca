"""Shared model machinery: the base classes, object metadata and selectors.

Every resource model is a pydantic v2 model whose attribute names are exactly the JSON field
names Istio and Kubernetes use (camelCase). The one exception is ``from`` (a Python keyword),
stored as ``from_`` with the alias ``from``; models always read and write the alias.

Models forbid unknown fields and are frozen: a parsed resource is a read-only value that the
registry, the model and the translators share. Optional fields default to ``None``; repeated
fields and maps default to empty lists and dicts, so readers never test for ``None`` there.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

#: Kubernetes IntOrString (``targetPort: 9080`` or ``targetPort: http``).
IntOrString = int | str


class Model(BaseModel):
    """Base of every API model: unknown fields rejected, attributes read-only, aliases on output."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        validate_by_alias=True,
        validate_by_name=False,
        serialize_by_alias=True,
        protected_namespaces=(),
    )

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of the fields that were set (as written), with Istio's names."""
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True)


class ObjectMeta(Model):
    """Kubernetes ``metadata``: what users write plus the fields the store fills."""

    name: str
    namespace: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    resourceVersion: str | None = None
    uid: str | None = None
    creationTimestamp: str | None = None
    generation: int | None = None
    deletionTimestamp: str | None = None
    finalizers: list[str] = Field(default_factory=list)
    ownerReferences: list[dict[str, Any]] = Field(default_factory=list)


class TemplateMeta(Model):
    """``metadata`` inside a pod template: no name needed."""

    name: str | None = None
    namespace: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    creationTimestamp: str | None = None


class LabelSelectorRequirement(Model):
    key: str
    operator: str
    values: list[str] = Field(default_factory=list)


class LabelSelector(Model):
    """Kubernetes label selector (``matchLabels`` and ``matchExpressions``)."""

    matchLabels: dict[str, str] = Field(default_factory=dict)
    matchExpressions: list[LabelSelectorRequirement] = Field(default_factory=list)


class WorkloadSelector(Model):
    """Istio ``selector`` of security and telemetry policies (``matchLabels``)."""

    matchLabels: dict[str, str] = Field(default_factory=dict)


class NetworkingWorkloadSelector(Model):
    """Istio ``workloadSelector`` of Sidecar, EnvoyFilter (``labels``)."""

    labels: dict[str, str] = Field(default_factory=dict)


class PolicyTargetReference(Model):
    """``targetRef``: a Gateway API resource a policy attaches to."""

    group: str | None = None
    kind: str
    name: str
    namespace: str | None = None


class Resource(Model):
    """A top-level object: ``apiVersion``, ``kind``, ``metadata`` (subclasses add the rest)."""

    apiVersion: str
    kind: str
    metadata: ObjectMeta
