"""The kind table: every resource kind Pilotfish serves, in one place.

A kind is identified by its ``kind`` name alone (names are unique across groups here), so
store keys are ``(kind, namespace, name)``. Each kind lists the API versions Istio (or
Kubernetes) serves for it; all are accepted as written, the first is the one shown on output.
"""

from __future__ import annotations

from dataclasses import dataclass

from pilotfish.errors import UnknownKindError

NETWORKING = "networking.istio.io"
SECURITY = "security.istio.io"
TELEMETRY = "telemetry.istio.io"
INSTALL = "install.istio.io"
CORE = ""
APPS = "apps"
FLAGGER = "flagger.app"

NETWORKING_VERSIONS = ("v1", "v1beta1", "v1alpha3")
SECURITY_VERSIONS = ("v1", "v1beta1")
TELEMETRY_VERSIONS = ("v1", "v1alpha1")


@dataclass(frozen=True, slots=True)
class KindInfo:
    """How a kind is named and served."""

    kind: str
    group: str
    versions: tuple[str, ...]
    plural: str
    short_names: tuple[str, ...] = ()
    namespaced: bool = True
    #: False for kinds the runtime reports but users do not apply (Pod, Event).
    appliable: bool = True
    #: True for kinds whose ``status`` a controller writes (Kubernetes' status subresource):
    #: an apply keeps the stored status instead of dropping it.
    keeps_status: bool = False

    @property
    def preferred_version(self) -> str:
        return self.versions[0]

    @property
    def api_version(self) -> str:
        """``group/version`` of the preferred version (``v1`` for the core group)."""
        return self.api_version_for(self.preferred_version)

    def api_version_for(self, version: str) -> str:
        return f"{self.group}/{version}" if self.group else version

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def is_istio(self) -> bool:
        return self.group.endswith(".istio.io")

    def api_path(self, namespace: str | None = None, name: str | None = None) -> str:
        """Kubernetes-style path: ``/apis/{group}/{version}/namespaces/{ns}/{plural}/{name}``."""
        base = f"/apis/{self.group}/{self.preferred_version}" if self.group else "/api/v1"
        if self.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        if name:
            base += f"/{name}"
        return base


KINDS: tuple[KindInfo, ...] = (
    KindInfo("VirtualService", NETWORKING, NETWORKING_VERSIONS, "virtualservices", ("vs",)),
    KindInfo("DestinationRule", NETWORKING, NETWORKING_VERSIONS, "destinationrules", ("dr",)),
    KindInfo("Gateway", NETWORKING, NETWORKING_VERSIONS, "gateways", ("gw",)),
    KindInfo("ServiceEntry", NETWORKING, NETWORKING_VERSIONS, "serviceentries", ("se",)),
    KindInfo("WorkloadEntry", NETWORKING, NETWORKING_VERSIONS, "workloadentries", ("we",)),
    KindInfo("WorkloadGroup", NETWORKING, NETWORKING_VERSIONS, "workloadgroups", ("wg",)),
    KindInfo("Sidecar", NETWORKING, NETWORKING_VERSIONS, "sidecars"),
    KindInfo("EnvoyFilter", NETWORKING, ("v1alpha3",), "envoyfilters"),
    KindInfo("PeerAuthentication", SECURITY, SECURITY_VERSIONS, "peerauthentications", ("pa",)),
    KindInfo("AuthorizationPolicy", SECURITY, SECURITY_VERSIONS, "authorizationpolicies", ("ap",)),
    KindInfo(
        "RequestAuthentication", SECURITY, SECURITY_VERSIONS, "requestauthentications", ("ra",)
    ),
    KindInfo("Telemetry", TELEMETRY, TELEMETRY_VERSIONS, "telemetries"),
    KindInfo("IstioOperator", INSTALL, ("v1alpha1",), "istiooperators", ("iop",)),
    KindInfo("Namespace", CORE, ("v1",), "namespaces", ("ns",), namespaced=False),
    KindInfo("Service", CORE, ("v1",), "services", ("svc",)),
    KindInfo("ServiceAccount", CORE, ("v1",), "serviceaccounts", ("sa",)),
    KindInfo("Secret", CORE, ("v1",), "secrets"),
    KindInfo("Deployment", APPS, ("v1",), "deployments", ("deploy",)),
    KindInfo("Pod", CORE, ("v1",), "pods", ("po",), appliable=False),
    KindInfo("Event", CORE, ("v1",), "events", ("ev",), appliable=False),
    KindInfo("Canary", FLAGGER, ("v1beta1",), "canaries", keeps_status=True),
    KindInfo("MetricTemplate", FLAGGER, ("v1beta1",), "metrictemplates"),
)

_BY_KIND: dict[str, KindInfo] = {k.kind: k for k in KINDS}
_BY_ALIAS: dict[str, KindInfo] = {}
for _k in KINDS:
    for _alias in (_k.kind, _k.plural, _k.singular, *_k.short_names):
        _BY_ALIAS[_alias.lower()] = _k


def by_kind(kind: str) -> KindInfo:
    """The kind named exactly (``VirtualService``)."""
    try:
        return _BY_KIND[kind]
    except KeyError:
        raise UnknownKindError(f'unknown kind "{kind}"') from None


def lookup(name: str) -> KindInfo:
    """A kind by any name a user may type: kind, plural, singular or short name, any case.

    ``name`` may carry a group suffix as kubectl allows (``virtualservices.networking.istio.io``).
    """
    key = name.lower()
    found = _BY_ALIAS.get(key)
    if found is None and "." in key:
        base, _, group = key.partition(".")
        found = _BY_ALIAS.get(base)
        if found is not None and found.group != group:
            found = None
    if found is None:
        known = ", ".join(sorted(k.plural for k in KINDS))
        raise UnknownKindError(
            f'the server doesn\'t have a resource type "{name}" (known types: {known})'
        )
    return found


def for_api_version(api_version: str, kind: str) -> KindInfo:
    """Check that ``apiVersion``/``kind`` is served and return the kind.

    Raises UnknownKindError naming what is served when the pair is not.
    """
    info = _BY_KIND.get(kind)
    if info is None:
        raise UnknownKindError(
            f'no matches for kind "{kind}" in version "{api_version}"'
            " (Pilotfish serves: " + ", ".join(k.kind for k in KINDS if k.appliable) + ")"
        )
    group, _, version = api_version.rpartition("/")
    if group != info.group or version not in info.versions:
        served = ", ".join(info.api_version_for(v) for v in info.versions)
        raise UnknownKindError(
            f'no matches for kind "{kind}" in version "{api_version}" (served: {served})'
        )
    return info


# Pilotfish's own API paths (group ``pilotfish.io``), served next to the kinds' paths. A
# ``*_ROUTE`` carries ``{namespace}`` and ``{name}`` placeholders (aiohttp's route syntax).
PILOTFISH_GROUP = "pilotfish.io"
PILOTFISH_API = f"/apis/{PILOTFISH_GROUP}/v1"
#: POST: a batch of objects (one file) applied in one transaction.
APPLY_PATH = f"{PILOTFISH_API}/apply"
#: POST: a batch of deletions in one transaction.
DELETE_PATH = f"{PILOTFISH_API}/delete"
#: GET: connected proxies and their xDS state.
PROXY_STATUS_PATH = f"{PILOTFISH_API}/proxystatus"
#: The mesh config in force (``pilotfish get meshconfig``).
MESH_CONFIG_PATH = f"{PILOTFISH_API}/meshconfig"
#: What a workload on another host needs to join: the xDS address, its TLS and the mesh roots
#: (``pilotfish x workload entry configure``).
CONTROL_PLANE_PATH = f"{PILOTFISH_API}/controlplane"
#: GET: the Envoy config the control plane generates for one proxy.
PROXY_CONFIG_ROUTE = f"{PILOTFISH_API}/namespaces/{{namespace}}/proxies/{{name}}/config"
#: POST {method, url, headers}: how one proxy's config would handle a request (``x explain``).
PROXY_EXPLAIN_ROUTE = f"{PILOTFISH_API}/namespaces/{{namespace}}/proxies/{{name}}/explain"
#: GET: where the dashboard is served; POST: a one-time login link to it.
DASHBOARD_PATH = f"{PILOTFISH_API}/dashboard"
#: POST: the TokenRequest subresource of a ServiceAccount (Kubernetes' shape).
TOKEN_ROUTE = f"{PILOTFISH_API}/namespaces/{{namespace}}/serviceaccounts/{{name}}/token"
#: GET: the API tokens (never their secrets); POST: a new token with a role.
API_TOKENS_PATH = f"{PILOTFISH_API}/apitokens"
#: DELETE: revoke one API token.
API_TOKEN_ROUTE = f"{API_TOKENS_PATH}/{{name}}"
#: GET: the audit log of changes made through the API.
AUDIT_PATH = f"{PILOTFISH_API}/audit"
#: GET: the mesh CA: its roots, the root rotation step reached, what each workload trusts.
CA_PATH = f"{PILOTFISH_API}/ca"
#: POST {"step": "add"|"activate"|"retire"}: one step of a root rotation (admin).
CA_ROTATE_ROOT_PATH = f"{CA_PATH}/rotate-root"


def proxy_config_path(namespace: str, name: str) -> str:
    """Where a client reads the generated config of proxy ``namespace``/``name``."""
    return PROXY_CONFIG_ROUTE.format(namespace=namespace, name=name)


def proxy_explain_path(namespace: str, name: str) -> str:
    """Where a client asks how proxy ``namespace``/``name`` would handle a request."""
    return PROXY_EXPLAIN_ROUTE.format(namespace=namespace, name=name)


def token_path(namespace: str, service_account: str) -> str:
    """Where a client asks for a token of ``namespace``/``service_account``."""
    return TOKEN_ROUTE.format(namespace=namespace, name=service_account)


def by_path(group: str, version: str, plural: str) -> KindInfo:
    """The kind behind an API path segment triple, for the HTTP API."""
    for info in KINDS:
        if info.group == group and info.plural == plural and version in info.versions:
            return info
    raise UnknownKindError(
        f"the server could not find the requested resource ({group}/{version}/{plural})"
    )
