"""A workload token request bound to a WorkloadGroup (Kubernetes' ``boundObjectRef``)."""

from __future__ import annotations

import pytest

from pilotfish.apiserver.tokens import bound_group


def test_bound_group_of_a_token_request() -> None:
    assert bound_group(None) == ""
    assert bound_group({"spec": {"expirationSeconds": 60}}) == ""
    ref = {"apiVersion": "networking.istio.io/v1", "kind": "WorkloadGroup", "name": "vmapp"}
    assert bound_group({"spec": {"boundObjectRef": ref}}) == "vmapp"
    with pytest.raises(ValueError, match=r"boundObjectRef.kind: .* WorkloadGroup only, not 'Pod'"):
        bound_group({"spec": {"boundObjectRef": {"kind": "Pod", "name": "p"}}})
    with pytest.raises(ValueError, match=r"boundObjectRef.name: required"):
        bound_group({"spec": {"boundObjectRef": {"kind": "WorkloadGroup"}}})
