"""IST0119 (JWT on a workload whose Service port is not HTTP) and IST0122 (invalid regexes),
on Istio-shaped YAML, with the line of the field each finding names."""

from __future__ import annotations

import textwrap

from pilotfish.config.analyze import analyze
from pilotfish.config.analyze.lines import field_line
from pilotfish.config.analyze.security import analyze_jwt_service_ports
from pilotfish.config.analyze.virtualservice import analyze_regexes
from tests.unit.config.analyze._util import codes, inputs, run, texts

HTTPBIN = """
apiVersion: v1
kind: Service
metadata: {name: httpbin, namespace: foo}
spec:
  selector: {app: httpbin}
  ports:
  - name: http
    port: 8000
    targetPort: 80
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: httpbin, namespace: foo}
spec:
  selector: {matchLabels: {app: httpbin}}
  template:
    metadata: {labels: {app: httpbin, version: v1}}
    spec:
      containers: [{name: httpbin, image: docker.io/kennethreitz/httpbin}]
"""

TCP_SERVICE = """
apiVersion: v1
kind: Service
metadata: {name: httpbin-tcp, namespace: foo}
spec:
  selector: {app: httpbin}
  ports:
  - name: tcp-echo
    port: 9000
    targetPort: 9000
  - name: grpc
    port: 7070
"""

REQUEST_AUTHN = """
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata:
  name: jwt-example
  namespace: foo
spec:
  selector:
    matchLabels:
      app: httpbin
  jwtRules:
  - issuer: "testing@secure.istio.io"
    jwksUri: "https://raw.githubusercontent.com/istio/istio/release-1.24/security/tools/jwt/samples/jwks.json"
"""


def test_jwt_on_http_service_port_is_clean() -> None:
    assert run(analyze_jwt_service_ports, HTTPBIN, REQUEST_AUTHN) == []


def test_jwt_on_tcp_service_port_is_ist0119() -> None:
    msgs = run(analyze_jwt_service_ports, HTTPBIN, TCP_SERVICE, REQUEST_AUTHN)
    assert codes(msgs) == ["IST0119"]
    assert texts(msgs) == [
        "Authentication policy with JWT targets Service with invalid port specification "
        "(port: 9000, name: tcp-echo, protocol: TCP, targetPort: 9000)."
    ]
    assert str(msgs[0].resource) == "RequestAuthentication foo/jwt-example"
    assert msgs[0].path == "spec.selector"


def test_jwt_without_rules_or_selector_is_not_checked() -> None:
    no_rules = REQUEST_AUTHN.split("  jwtRules:")[0]
    assert run(analyze_jwt_service_ports, HTTPBIN, TCP_SERVICE, no_rules) == []
    namespace_wide = REQUEST_AUTHN.replace(
        "  selector:\n    matchLabels:\n      app: httpbin\n", ""
    )
    assert "selector" not in namespace_wide
    assert run(analyze_jwt_service_ports, HTTPBIN, TCP_SERVICE, namespace_wide) == []


def test_jwt_selecting_other_workloads_ignores_the_tcp_service() -> None:
    other = REQUEST_AUTHN.replace("app: httpbin", "app: sleep")
    assert run(analyze_jwt_service_ports, HTTPBIN, TCP_SERVICE, other) == []


def test_jwt_target_ref_to_a_service() -> None:
    ref = REQUEST_AUTHN.replace(
        "  selector:\n    matchLabels:\n      app: httpbin\n",
        "  targetRef: {kind: Service, group: '', name: httpbin-tcp}\n",
    )
    msgs = run(analyze_jwt_service_ports, HTTPBIN, TCP_SERVICE, ref)
    assert [m.path for m in msgs] == ["spec.targetRef"]
    assert "port: 9000" in msgs[0].text


def test_app_protocol_http_is_clean() -> None:
    svc = TCP_SERVICE.replace("  - name: tcp-echo\n", "  - name: echo\n    appProtocol: http\n")
    assert run(analyze_jwt_service_ports, HTTPBIN, svc, REQUEST_AUTHN) == []


VS = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: bad-regex
  namespace: default
spec:
  hosts:
  - reviews
  http:
  - match:
    - uri:
        regex: "/api/(v1"
      headers:
        end-user:
          regex: "jas(?=on)"
    - queryParams:
        id:
          regex: "[0-9]+"
    corsPolicy:
      allowOrigins:
      - regex: "https://*[.example.com"
    route:
    - destination:
        host: reviews
"""


def test_invalid_regexes_are_ist0122_with_field_and_line() -> None:
    msgs = run(analyze_regexes, VS)
    assert codes(msgs) == ["IST0122"] * 3
    uri, header, cors = msgs
    assert uri.text.startswith(
        'Field "uri" regular expression invalid: "/api/(v1" (error parsing regexp: '
    )
    assert header.text.startswith('Field "headers" regular expression invalid: "jas(?=on)" (')
    assert "lookahead" in header.text
    assert cors.text.startswith('Field "corsPolicy.allowOrigins" regular expression invalid:')
    text = textwrap.dedent(VS)
    assert [field_line(text, 0, msg.path) for msg in msgs] == [13, 16, 22]


def test_valid_regexes_are_clean() -> None:
    assert (
        run(analyze_regexes, VS.replace("(v1", "(v1)").replace("(?=on)", "on").replace("*[", "*"))
        == []
    )


def test_analyze_pipeline_reports_both_codes() -> None:
    found = analyze(inputs(HTTPBIN, TCP_SERVICE, REQUEST_AUTHN, VS), namespace=None)
    got = {m.code for m in found}
    assert {"IST0119", "IST0122"} <= got


def test_deprecated_fault_delay_percent_is_ist0002() -> None:
    from pilotfish.config.analyze.virtualservice import analyze_deprecated_fields

    vs = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings, namespace: default}
spec:
  hosts: [ratings]
  http:
  - fault:
      delay:
        percent: 10
        fixedDelay: 5s
    route:
    - destination: {host: ratings}
"""
    msgs = run(analyze_deprecated_fields, vs)
    assert texts(msgs) == [
        "Deprecated: HTTPRoute.fault.delay.percent is deprecated; use "
        "HTTPRoute.fault.delay.percentage"
    ]
    assert msgs[0].path == "spec.http[0].fault.delay.percent"
    fixed = vs.replace("percent: 10", "percentage: {value: 10}")
    assert run(analyze_deprecated_fields, fixed) == []
