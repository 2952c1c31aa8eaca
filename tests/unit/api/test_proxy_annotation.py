from pilotfish.api.proxy_annotation import ANNOTATION, proxy_config


def test_secret_ttl_is_read_from_proxy_metadata() -> None:
    assert proxy_config({}).secret_ttl is None
    got = proxy_config({ANNOTATION: "proxyMetadata:\n  SECRET_TTL: 90s\n"})
    assert got.secret_ttl == 90 and got.problems == []


def test_other_fields_are_reported_as_not_applied_and_bad_values_as_errors() -> None:
    got = proxy_config(
        {ANNOTATION: "concurrency: 2\nproxyMetadata:\n  FOO: x\n"},
        "spec.template.metadata",
    )
    where = f"spec.template.metadata.annotations[{ANNOTATION}]"
    assert got.problems == [
        (f"{where}.concurrency", "accepted but not applied yet"),
        (f"{where}.proxyMetadata.FOO", "accepted but not applied yet"),
    ]
    bad = proxy_config({ANNOTATION: "proxyMetadata:\n  SECRET_TTL: soon\n"})
    assert bad.secret_ttl is None and "invalid duration" in bad.problems[0][1]
    assert proxy_config({ANNOTATION: "[1, 2]"}).problems[0][1].startswith("must be a ProxyConfig")


def test_hold_application_until_proxy_starts_is_read() -> None:
    assert proxy_config({}).hold_application is None
    held = proxy_config({ANNOTATION: "holdApplicationUntilProxyStarts: true\n"})
    assert held.hold_application is True and held.problems == []
    unheld = proxy_config({ANNOTATION: "holdApplicationUntilProxyStarts: false"})
    assert unheld.hold_application is False
    bad = proxy_config({ANNOTATION: "holdApplicationUntilProxyStarts: soon"})
    assert bad.hold_application is None
    assert bad.problems == [
        (f"metadata.annotations[{ANNOTATION}].holdApplicationUntilProxyStarts",
         "must be true or false"),
    ]  # fmt: skip
