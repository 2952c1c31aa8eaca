"""The files of a workload on another host: written as istioctl writes them, read back by
``pilotfish proxy --config-dir``."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
import yaml

from pilotfish.api import workloadfiles as wf
from pilotfish.cli.proxy_cmd import build_settings, options_from_dir

FILES = wf.WorkloadFiles(
    namespace="apps",
    service_account="vmsa",
    labels={"app": "vmapp", "version": "v1"},
    auto_register_group="vmapp",
    workload_name="vmapp",
    cluster_id="Kubernetes",
    trust_domain="cluster.local",
    discovery_address=f"{wf.CONTROL_PLANE_NAME}:15012",
    control_plane_ip="10.0.0.1",
)


def write(directory: Path, files: wf.WorkloadFiles = FILES) -> Path:
    directory.mkdir(exist_ok=True)
    (directory / wf.CLUSTER_ENV).write_text(wf.render_cluster_env(files))
    (directory / wf.MESH_YAML).write_text(wf.render_mesh_yaml(files))
    (directory / wf.HOSTS).write_text(wf.render_hosts(files))
    (directory / wf.ROOT_CERT).write_text("roots")
    (directory / wf.TOKEN).write_text("token\n")
    return directory


def test_cluster_env_has_istios_names() -> None:
    env = wf.parse_cluster_env(wf.render_cluster_env(FILES))
    assert env["POD_NAMESPACE"] == "apps"
    assert env["SERVICE_ACCOUNT"] == "vmsa"
    assert env["ISTIO_META_AUTO_REGISTER_GROUP"] == "vmapp"
    assert env["ISTIO_METAJSON_LABELS"] == '{"app":"vmapp","version":"v1"}'
    assert env["ISTIO_INBOUND_PORTS"] == "*"
    assert env["ISTIO_LOCAL_EXCLUDE_PORTS"] == "15090,15021,15020,22"
    assert env["CANONICAL_SERVICE"] == "vmapp" and env["CANONICAL_REVISION"] == "v1"
    assert "ISTIO_SVC_IP" not in env
    mesh = yaml.safe_load(wf.render_mesh_yaml(FILES))["defaultConfig"]
    assert mesh["discoveryAddress"] == "istiod.istio-system.svc:15012"
    assert mesh["controlPlaneAuthPolicy"] == "MUTUAL_TLS"
    assert mesh["proxyMetadata"]["POD_NAMESPACE"] == "apps"
    assert wf.render_hosts(FILES) == "10.0.0.1 istiod.istio-system.svc\n"


def test_proxy_starts_from_the_directory(tmp_path: Path) -> None:
    options, excluded = options_from_dir(write(tmp_path / "vm"))
    assert excluded == (15090, 15021, 15020, 22)
    # The name resolves through the directory's hosts; the certificate is checked for it.
    assert options["discovery_address"] == ("10.0.0.1:15012",)
    assert options["xds_server_name"] == "istiod.istio-system.svc"
    settings = build_settings(**options, ip="10.1.0.2", interception_mode="REDIRECT")
    node = settings.node
    assert (node.namespace, node.service_account) == ("apps", "vmsa")
    assert node.pod_name == "vmapp-10.1.0.2"
    assert node.extra["AUTO_REGISTER_GROUP"] == "vmapp"
    assert node.labels["app"] == "vmapp" and node.labels["security.istio.io/tlsMode"] == "istio"
    assert (
        settings.xds_tls is not None
        and settings.xds_tls.ca_file == tmp_path / "vm" / "root-cert.pem"
    )
    assert settings.identity is not None
    assert settings.identity.token_file == tmp_path / "vm" / "istio-token"
    assert settings.bootstrap_patches is None


def test_bootstrap_patches_in_the_directory_reach_the_agent(tmp_path: Path) -> None:
    directory = write(tmp_path / "vm")
    (directory / "bootstrap-patches.json").write_text("[]")
    options, _ = options_from_dir(directory)
    settings = build_settings(**options, ip="10.1.0.2", interception_mode="REDIRECT")
    assert settings.bootstrap_patches == directory / "bootstrap-patches.json"


def test_the_groups_probe_goes_through_mesh_yaml(tmp_path: Path) -> None:
    import dataclasses

    probe = {"httpGet": {"path": "/ready", "port": 8080}, "periodSeconds": 2}
    files = dataclasses.replace(FILES, readiness_probe=probe)
    mesh = yaml.safe_load(wf.render_mesh_yaml(files))["defaultConfig"]
    assert mesh["readinessProbe"] == probe  # as istioctl writes it
    options, _ = options_from_dir(write(tmp_path / "vm", files))
    settings = build_settings(**options, ip="10.1.0.2", interception_mode="REDIRECT")
    assert settings.workload_probe == probe
    assert "readinessProbe" not in yaml.safe_load(wf.render_mesh_yaml(FILES))["defaultConfig"]


def test_errors_name_the_file_and_setting(tmp_path: Path) -> None:
    directory = write(tmp_path / "vm")
    (directory / wf.MESH_YAML).write_text("defaultConfig: {}\n")
    with pytest.raises(click.UsageError, match=r"mesh\.yaml: defaultConfig\.discoveryAddress"):
        options_from_dir(directory)
    write(directory)
    (directory / wf.CLUSTER_ENV).write_text("ISTIO_INBOUND_PORTS='8080'\nPOD_NAMESPACE=apps\n")
    with pytest.raises(click.UsageError, match=r"cluster\.env: ISTIO_INBOUND_PORTS"):
        options_from_dir(directory)
    (directory / wf.CLUSTER_ENV).unlink()
    with pytest.raises(click.UsageError, match=r"cannot read .*cluster\.env"):
        options_from_dir(directory)
