"""Validation of resources with Istio's semantics: one module per kind or group.

``validate(body, source=..., default_namespace=...)`` returns a :class:`Validated` (kind,
typed model, normalized body) or raises :class:`pilotfish.errors.ValidationError` listing every
problem with its field path, or :class:`pilotfish.errors.UnknownKindError`. ``VALIDATORS``
maps each kind to its semantic checks.
"""

from pilotfish.config.validation.validate import VALIDATORS, Validated, normalized_body, validate

__all__ = ["VALIDATORS", "Validated", "normalized_body", "validate"]
