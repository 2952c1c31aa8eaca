"""Shared checks for validators: the error collector, names, hosts, ports, durations, regexes.

Messages follow Istio's validation code (``pkg/config/validation``) and Kubernetes'
apimachinery where those have one, so users see the text they would see from ``istioctl`` or
``kubectl``. Every function here is pure.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping

from pilotfish.api.duration import parse_duration
from pilotfish.errors import FieldError

#: How a warning about a valid field Pilotfish does not apply starts (see coverage.py).
NOT_APPLIED = "accepted but not applied by Pilotfish yet"


class Errors:
    """Collects FieldErrors (and warnings) of one resource, in the order found."""

    __slots__ = ("items", "warnings")

    def __init__(self) -> None:
        self.items: list[FieldError] = []
        self.warnings: list[FieldError] = []

    def add(self, path: str, reason: str | None) -> None:
        """Record ``reason`` at ``path``; ``None`` (no problem) is ignored."""
        if reason:
            self.items.append(FieldError(path, reason))

    def warn(self, path: str, reason: str) -> None:
        self.warnings.append(FieldError(path, reason))

    def __bool__(self) -> bool:
        return bool(self.items)


# --- names -----------------------------------------------------------------------------------

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
_DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
# Istio's host labels accept upper case (pkg/config/labels)
_HOST_LABEL = re.compile(r"^[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?$")
_WILDCARD_HOST_LABEL = re.compile(r"^(\*|(\*|\*-)?[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?)$")
_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_HEADER_NAME = re.compile(r"^[-_A-Za-z0-9]+$")
_HEADER_VALUE_BAD = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")

LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
    "and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', "
    "regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' "
    "or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex "
    "used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
DNS1035_MSG = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with "
    "an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or "
    "'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
)


def is_dns1123_label(name: str) -> bool:
    return len(name) <= 63 and bool(_DNS1123_LABEL.match(name))


def is_dns1123_subdomain(name: str) -> bool:
    return len(name) <= 253 and bool(_DNS1123_SUBDOMAIN.match(name))


def is_dns1035_label(name: str) -> bool:
    return len(name) <= 63 and bool(_DNS1035_LABEL.match(name))


def name_error(value: str, kind: str = "subdomain") -> str | None:
    """Kubernetes' message for an invalid object name, or None."""
    if kind == "label":
        ok, msg, limit = is_dns1123_label(value), LABEL_MSG, 63
    elif kind == "dns1035":
        ok, msg, limit = is_dns1035_label(value), DNS1035_MSG, 63
    else:
        ok, msg, limit = is_dns1123_subdomain(value), SUBDOMAIN_MSG, 253
    if ok:
        return None
    if len(value) > limit:
        return f'Invalid value: "{value}": must be no more than {limit} characters'
    return f'Invalid value: "{value}": {msg}'


def qualified_name_error(key: str) -> str | None:
    """Kubernetes label/annotation key rules (``[prefix/]name``), or None."""
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or not is_dns1123_subdomain(prefix)):
        return f"prefix part of {key!r} must be a lowercase RFC 1123 subdomain"
    if not name or len(name) > 63 or not _QUALIFIED_NAME.match(name):
        return (
            f"name part of {key!r} must consist of alphanumeric characters, '-', '_' or '.', "
            "and must start and end with an alphanumeric character (63 characters at most)"
        )
    return None


def label_value_error(value: str) -> str | None:
    if len(value) > 63 or not _LABEL_VALUE.match(value):
        return (
            f"invalid label value {value!r}: must be 63 characters or less and consist of "
            "alphanumeric characters, '-', '_' or '.', starting and ending with an alphanumeric"
        )
    return None


def check_labels(errs: Errors, path: str, labels: Mapping[str, str]) -> None:
    """Label keys and values, each problem at ``path[key]``."""
    for key, value in labels.items():
        errs.add(f"{path}[{key}]", qualified_name_error(key))
        errs.add(f"{path}[{key}]", label_value_error(value))


def check_selector(errs: Errors, path: str, labels: Mapping[str, str]) -> None:
    """Istio workload selector labels: no empty keys, no wildcards (validateWorkloadSelector)."""
    for key, value in labels.items():
        if key == "":
            errs.add(path, f'empty key is not supported in selector: "{key}={value}"')
        if "*" in key or "*" in value:
            errs.add(f"{path}[{key}]", f'wildcard is not supported in selector: "{key}={value}"')


# --- hosts -----------------------------------------------------------------------------------


def _dns1123_precondition(name: str) -> str | None:
    if len(name) > 255:
        return f'domain name "{name}" too long (max 255)'
    if not name:
        return "empty domain name not allowed"
    return None


def _dns1123_labels(domain: str) -> str | None:
    parts = domain.split(".")
    if parts[-1].isdigit():
        return (
            f'domain name "{domain}" invalid (top level domain "{parts[-1]}" cannot be all-numeric)'
        )
    for i, label in enumerate(parts):
        if i == len(parts) - 1 and label == "":
            return None
        if len(label) > 63 or not _HOST_LABEL.match(label):
            return f'domain name "{domain}" invalid (label "{label}" invalid)'
    return None


def fqdn_error(fqdn: str) -> str | None:
    """Istio ValidateFQDN."""
    return _dns1123_precondition(fqdn) or _dns1123_labels(fqdn)


def wildcard_domain_error(domain: str) -> str | None:
    """Istio ValidateWildcardDomain: an FQDN whose first label may be a wildcard."""
    pre = _dns1123_precondition(domain)
    if pre:
        return pre
    first, dot, rest = domain.partition(".")
    if not _WILDCARD_HOST_LABEL.match(first) or len(first) > 63:
        return f'domain name "{domain}" invalid (label "{first}" invalid)'
    if dot:
        return _dns1123_labels(rest)
    return None


def partial_wildcard_error(host: str) -> str | None:
    if "*" in host and len(host) != 1 and not host.startswith("*."):
        return f'partial wildcard "{host}" not allowed'
    return None


def is_ip(addr: str) -> bool:
    try:
        ipaddress.ip_address(addr)
    except ValueError:
        return False
    return True


def ip_error(addr: str) -> str | None:
    return None if is_ip(addr) else f"{addr} is not a valid IP"


def subnet_error(subnet: str) -> str | None:
    """Istio ValidateIPSubnet: an IP or a CIDR block."""
    if subnet.count("/") == 1:
        try:
            ipaddress.ip_network(subnet, strict=False)
        except ValueError:
            return f"{subnet} is not a valid CIDR block"
        return None
    return ip_error(subnet)


def hosts_overlap(a: str, b: str) -> bool:
    """Istio host.Name.Matches: the two (possibly wildcard) hosts share a name."""
    if a == b or a == "*" or b == "*":
        return True
    if a.startswith("*"):
        if b.startswith("*"):
            sa, sb = a[1:], b[1:]
            return sa.endswith(sb) or sb.endswith(sa)
        return b.endswith(a[1:])
    if b.startswith("*"):
        return a.endswith(b[1:])
    return False


def host_subset_of(a: str, b: str) -> bool:
    """Istio host.Name.SubsetOf: every name ``a`` matches is matched by ``b``."""
    if a == b or b == "*":
        return True
    if b.startswith("*"):
        return a.endswith(b[1:])
    return False


def namespace_slash_host_error(host: str, is_gateway: bool) -> list[str]:
    """Istio ValidateNamespaceSlashWildcardHostname for Gateway and Sidecar hosts."""
    ns, slash, name = host.partition("/")
    if not slash:
        if is_gateway:
            return _gateway_host_part_errors(host, True)
        return ["host must be of form namespace/dnsName"]
    out: list[str] = []
    if not ns or not name:
        out.append("config namespace and dnsName in host entry cannot be empty")
    allowed = ("*", ".") if is_gateway else ("*", ".", "~")
    if ns not in allowed and not is_dns1123_label(ns):
        where = "gateway" if is_gateway else "sidecar"
        out.append(f'invalid namespace value "{ns}" in {where}')
    out.extend(_gateway_host_part_errors(name, is_gateway))
    return out


def _gateway_host_part_errors(host: str, is_gateway: bool) -> list[str]:
    out: list[str] = []
    if host != "*" and "." not in host:
        out.append("short names (non FQDN) are not allowed")
    err = wildcard_domain_error(host)
    if err and not (is_gateway and is_ip(host)):
        out.append(err)
    perr = partial_wildcard_error(host)
    if perr:
        out.append(perr)
    return out


# --- ports, protocols, durations, percentages ------------------------------------------------


def port_error(port: int | None) -> str | None:
    """Istio ValidatePort."""
    n = port or 0
    if 1 <= n <= 65535:
        return None
    return f"port number {n} must be in the range 1..65535"


PROTOCOLS = {
    "TCP": "TCP",
    "UDP": "UDP",
    "GRPC": "GRPC",
    "GRPC-WEB": "GRPC-Web",
    "HTTP": "HTTP",
    "HTTP_PROXY": "HTTP_PROXY",
    "HTTP2": "HTTP2",
    "HTTPS": "HTTPS",
    "TLS": "TLS",
    "MONGO": "Mongo",
    "REDIS": "Redis",
    "MYSQL": "MySQL",
}
HTTP_PROTOCOLS = {"HTTP", "HTTP2", "GRPC", "GRPC-WEB", "HTTP_PROXY"}
TLS_PROTOCOLS = {"HTTPS", "TLS"}


def protocol_of(name: str | None) -> str | None:
    """Istio protocol.Parse: the canonical upper-case name, or None when unsupported."""
    key = (name or "").upper()
    return key if key in PROTOCOLS else None


def protocol_error(name: str | None) -> str | None:
    """Istio ValidateProtocol (empty means "sniff")."""
    if name and protocol_of(name) is None:
        return f"unsupported protocol: {name}"
    return None


def port_name_error(name: str) -> str | None:
    return None if is_dns1123_label(name) else f"invalid port name: {name}"


def duration_error(value: str | None, *, allow_zero: bool = False) -> str | None:
    """Istio ValidateDuration: a duration of at least 1ms, at millisecond precision.

    ``allow_zero``: fields where Istio documents ``0s`` as "disabled" (route timeout, idle
    timeouts) accept exactly zero.
    """
    if value is None:
        return None
    try:
        seconds = parse_duration(value)
    except ValueError:
        return f'invalid duration "{value}": use a number with a unit such as "10s" or "100ms"'
    if allow_zero and seconds == 0:
        return None
    if seconds < 0.001 - 1e-12:
        return "duration must be greater than 1ms"
    ms = seconds * 1000
    if abs(ms - round(ms)) > 1e-6:
        return "only durations to ms precision are supported"
    return None


def percentage_error(value: float | None) -> str | None:
    """Istio validatePercentage for ``Percent`` values."""
    if value is None:
        return None
    if value < 0 or value > 100 or (0 < value < 0.0001):
        return f"percentage {value:g} is neither 0.0, nor in range [0.0001, 100.0]"
    return None


def percent_error(value: int | None) -> str | None:
    """Istio ValidatePercent for integer percents."""
    if value is None or 0 <= value <= 100:
        return None
    return f"percentage {value} is not in range 0..100"


# --- regexes and headers ---------------------------------------------------------------------

_RE2_UNSUPPORTED = (
    ("(?=", "lookahead"),
    ("(?!", "negative lookahead"),
    ("(?<=", "lookbehind"),
    ("(?<!", "negative lookbehind"),
    ("(?>", "atomic group"),
    ("(?(", "conditional"),
    ("(?P=", "backreference"),
    ("(?#", "comment group"),
)


def _re2_problem(pattern: str) -> str | None:
    """Constructs Python's ``re`` accepts but RE2 (Envoy, Istio) rejects."""
    for token, what in _RE2_UNSUPPORTED:
        if token in pattern:
            return f"invalid or unsupported Perl syntax: `{token}` ({what} is not supported)"
    i = 0
    while i < len(pattern):
        if pattern[i] == "\\" and i + 1 < len(pattern):
            nxt = pattern[i + 1]
            after = pattern[i + 2] if i + 2 < len(pattern) else ""
            if nxt in "123456789" and not after.isdigit():
                return f"invalid escape sequence: `\\{nxt}` (backreferences are not supported)"
            if nxt == "g" and after == "<":
                return "invalid escape sequence: `\\g` (backreferences are not supported)"
            i += 2
            continue
        i += 1
    return None


def regex_problem(pattern: str) -> str | None:
    """Why RE2 (Envoy, Istio) would not compile ``pattern``, or None; Python's ``re`` stands
    in for Go's RE2 parser, with the constructs only Python accepts refused."""
    problem = _re2_problem(pattern)
    if problem is None:
        try:
            re.compile(pattern)
        except re.error as exc:
            problem = str(exc)
        except (OverflowError, RecursionError):
            problem = "regular expression too complex"
    return problem


def regex_error(pattern: str, where: str) -> str | None:
    """Istio validateStringRegexp, with Python's ``re`` standing in for Go's RE2 parser."""
    if len(pattern) > 1024:
        return f'"{where}": regex is too large, max length allowed is 1024'
    problem = regex_problem(pattern)
    if problem is None:
        return None
    return (
        f'"{where}": error parsing regexp: {problem}; Istio uses RE2 style regex-based match '
        "(https://github.com/google/re2/wiki/Syntax)"
    )


#: Pseudo-headers a VirtualService may match on (Istio accepts and enforces them).
MATCHABLE_PSEUDO_HEADERS = (":method", ":authority", ":path", ":scheme")


def header_name_error(name: str, *, pseudo: bool = False) -> str | None:
    """Istio ValidateHTTPHeaderName; ``pseudo``: a match may also name a pseudo-header."""
    if not name:
        return "header name cannot be empty"
    if pseudo and name.lower() in MATCHABLE_PSEUDO_HEADERS:
        return None
    if not _HEADER_NAME.match(name):
        return f"header name {name} is not a valid header name"
    return None


def header_value_error(value: str) -> str | None:
    """Istio ValidateHTTPHeaderValue: no control characters, ``%`` only around variables."""
    if _HEADER_VALUE_BAD.search(value):
        return f"header value configuration {value} is invalid"
    rest = value.replace("%%", "")
    if rest.count("%") % 2:
        return f"header value configuration: unterminated variable in {value!r}"
    return None


def header_operation_name_error(name: str, allow_authority: bool) -> str | None:
    """Istio ValidateHTTPHeaderOperationName / ...WithAuthorityOperationName."""
    if not name:
        return "header name cannot be empty"
    lower = name.lower()
    is_authority = lower in (":authority", "host")
    if allow_authority and is_authority:
        return None
    if lower == "host":
        return f'invalid header "{name}": cannot set Host header'
    if name.startswith(":"):
        return f'invalid header "{name}": header cannot have ":" prefix'
    return None


# --- visibility ------------------------------------------------------------------------------


def check_export_to(
    errs: Errors,
    path: str,
    namespace: str,
    export_to: Iterable[str],
    *,
    service_entry: bool = False,
) -> None:
    """Istio validateExportTo: ``.``, ``*``, namespaces (and ``~`` for ServiceEntry)."""
    entries = list(export_to)
    seen: set[str] = set()
    for i, e in enumerate(entries):
        key = namespace if e == "." else e
        if key in seen:
            if key != e:
                errs.add(
                    f"{path}[{i}]",
                    f"duplicate entries in exportTo: . and current namespace {namespace}",
                )
            else:
                errs.add(f"{path}[{i}]", f"duplicate entries in exportTo for entry {e}")
            continue
        if (e == "~" and service_entry) or e == "*" or (e != "~" and is_dns1123_label(key)):
            seen.add(key)
        else:
            errs.add(
                f"{path}[{i}]",
                f"only . or * or a valid DNS 1123 label is allowed as exportTo entry, found {e}",
            )
    if "*" in seen and len(entries) > 1:
        errs.add(path, "cannot have both public (*) and non-public exportTo values for a resource")
    if "~" in seen and len(entries) > 1:
        errs.add(path, "cannot export service entry to no one (~) and someone")
