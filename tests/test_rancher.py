"""cert-manager and Rancher: releases, their order, and values the real chart accepts."""

import filecmp
from pathlib import Path

import pytest
import yaml

from conftest import NGINX_L7, RKE2, cached_run
from rendering.chart_schema import REFERENCE_ROOT, validate_rancher_values
from rendering.rancher_values import RancherValuesSpec, rancher_values

SHARED_REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "rancher-chart"
PEM_CERT = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
PEM_KEY = "-----BEGIN EC PRIVATE KEY-----\nMHc\n-----END EC PRIVATE KEY-----\n"


def releases(run):
    return {r.inputs["name"]: r for r in run.of_type("kubernetes:helm.sh/v3:Release")}


def test_releases_are_pinned_and_ordered(dev_run):
    found = releases(dev_run)
    cert_manager, rancher = found["cert-manager"], found["rancher"]
    (gate,) = dev_run.of_type("pulumi-python:dynamic/rancher-ha:ApiGate")
    assert gate.urn in cert_manager.dependencies
    assert cert_manager.urn in rancher.dependencies and gate.urn in rancher.dependencies
    assert cert_manager.inputs["chart"] == "cert-manager" and cert_manager.inputs["version"] == "v1.19.2"
    assert cert_manager.inputs["repositoryOpts"]["repo"] == "https://charts.jetstack.io"
    assert cert_manager.inputs["namespace"] == "cert-manager"
    assert cert_manager.inputs["values"]["crds"] == {"enabled": True}
    # Two servers: cert-manager runs highly available (replicas, PDBs, spread; rendered
    # with the real chart in test_charts_real.py).
    assert cert_manager.inputs["values"]["replicaCount"] == 2 and cert_manager.inputs["values"]["webhook"]["replicaCount"] == 2
    assert rancher.inputs["chart"] == "rancher" and rancher.inputs["version"] == "2.14.4"
    assert rancher.inputs["repositoryOpts"]["repo"] == "https://releases.rancher.com/server-charts/stable"
    assert rancher.inputs["namespace"] == "cattle-system"


def test_rancher_values_on_the_dev_stack(dev_run):
    rancher = releases(dev_run)["rancher"]
    values = rancher.inputs["values"]
    assert values["hostname"] == "rancher.dev.example.com"
    assert values["replicas"] == 2
    assert values["ingress"] == {"tls": {"source": "rancher"}}
    assert values["tls"] == "ingress"
    assert values["bootstrapPassword"] == dev_run.outputs["bootstrapPassword"].value
    assert "values" in rancher.secret_inputs


@pytest.mark.parametrize("overrides", [{}, RKE2, NGINX_L7, {**RKE2, **NGINX_L7}], ids=["k3s", "rke2", "k3s-l7", "rke2-l7"])
def test_values_validate_against_the_pinned_chart_schema(overrides):
    run = cached_run(overrides)
    rancher = releases(run)["rancher"]
    assert validate_rancher_values(rancher.inputs["values"], rancher.inputs["version"]) == []
    assert rancher.inputs["values"]["replicas"] == len([i for i in run.of_type("aws:ec2/instance:Instance") if "-server-" in i.name])


def test_l7_values_and_private_ca_secret():
    run = cached_run(NGINX_L7)
    found = releases(run)
    assert "cert-manager" not in found  # TLS ends on NGINX: no cert-manager needed
    values = found["rancher"].inputs["values"]
    assert values["tls"] == "external" and values["privateCA"] is True and values["agentTLSMode"] == "strict"
    # Silences the chart's cert-manager check; with tls=external the Ingress has no tls section.
    assert values["ingress"] == {"tls": {"source": "secret"}}
    (secret,) = [s for s in run.of_type("kubernetes:core/v1:Secret") if s.inputs["metadata"]["name"] == "tls-ca"]
    assert secret.inputs["metadata"]["namespace"] == "cattle-system"
    ca = next(c for c in run.of_type("tls:index/selfSignedCert:SelfSignedCert") if c.name == "rancher-certificate-ca")
    assert secret.inputs["stringData"] == {"cacerts.pem": ca.outputs["certPem"]}
    assert secret.urn in found["rancher"].dependencies


def test_l4_with_provided_certificate_uses_the_ingress_secret():
    run = cached_run({"rancher-ha:tlsSource": "provided", "rancher-ha:tlsCertificate": PEM_CERT, "rancher-ha:tlsPrivateKey": PEM_KEY})
    found = releases(run)
    values = found["rancher"].inputs["values"]
    assert values["ingress"]["tls"]["source"] == "secret" and values["agentTLSMode"] == "system-store"
    assert "cert-manager" not in found
    (secret,) = run.of_type("kubernetes:core/v1:Secret")
    assert secret.inputs["metadata"]["name"] == "tls-rancher-ingress" and secret.inputs["type"] == "kubernetes.io/tls"
    assert secret.inputs["stringData"]["tls.key"].strip() == PEM_KEY.strip() and "stringData" in secret.secret_inputs
    assert validate_rancher_values(values, "2.14.4") == []


def test_lets_encrypt_values():
    run = cached_run({"rancher-ha:tlsSource": "letsEncrypt", "rancher-ha:letsEncryptEmail": "ops@example.com"})
    values = releases(run)["rancher"].inputs["values"]
    assert values["ingress"]["tls"]["source"] == "letsEncrypt"
    assert values["letsEncrypt"] == {"email": "ops@example.com", "environment": "production", "ingress": {"class": "traefik"}}
    assert values["agentTLSMode"] == "system-store"
    assert validate_rancher_values(values, "2.14.4") == []


@pytest.mark.parametrize("version", sorted(p.name[1:] for p in REFERENCE_ROOT.iterdir()))
@pytest.mark.parametrize("layer, source", [("l4", "rancher"), ("l4", "letsEncrypt"), ("l4", "provided"), ("l7", "generated")])
def test_every_values_shape_validates_for_every_reference_version(version, layer, source):
    spec = RancherValuesSpec("rancher.example.com", 3, layer, source, source == "generated", "strict", "ingress-nginx", "ops@example.com", "http://proxy:3128", ("10.0.0.0/8", ".svc"))
    assert validate_rancher_values(rancher_values(spec, "secret"), version) == []


def test_the_validator_catches_what_helm_would_reject():
    assert validate_rancher_values({"replicas": 3.0}, "2.14.4") == []
    problems = validate_rancher_values({"replicas": 2.5, "hostname": 5}, "2.14.4")
    assert problems == ["replicas: chart default is int, got float"]
    problems = validate_rancher_values({"replicas": "3", "agentTLSMode": "lenient", "ingres": {}, "auditLog": {"level": 7}}, "2.14.4")
    joined = "\n".join(problems)
    assert "replicas: chart default is int, got str" in joined
    assert "agentTLSMode" in joined and "ingres: not a value" in joined and "auditLog.level" in joined


def test_forwarded_headers_are_trusted_from_what_the_ingress_really_sees():
    run = cached_run(NGINX_L7)
    (config,) = [r for r in run.resources if r.type == "kubernetes:helm.cattle.io/v1:HelmChartConfig"]
    assert config.inputs["metadata"] == {"name": "traefik", "namespace": "kube-system"}
    public_cidrs = sorted(s.inputs["cidrBlock"] for s in run.of_type("aws:ec2/subnet:Subnet") if "public" in s.name)
    values = yaml.safe_load(config.inputs["spec"]["valuesContent"])
    # K3s ServiceLB MASQUERADEs: Traefik sees svclb pod addresses (the pod network), never
    # NGINX's; NGINX itself lives in the load-balancer subnets (any zone: it self-heals).
    assert values == {"ports": {"web": {"forwardedHeaders": {"trustedIPs": ["10.42.0.0/16", *public_cidrs]}}}}
    assert config.urn in releases(run)["rancher"].dependencies

    rke2 = cached_run({**RKE2, **NGINX_L7})
    (config,) = [r for r in rke2.resources if r.type == "kubernetes:helm.cattle.io/v1:HelmChartConfig"]
    assert config.inputs["metadata"]["name"] == "rke2-ingress-nginx"
    values = yaml.safe_load(config.inputs["spec"]["valuesContent"])["controller"]["config"]
    assert values["use-forwarded-headers"] == "true" and values["proxy-real-ip-cidr"].startswith("10.42.0.0/16,")


def test_rancher_replicas_are_capped_at_three_and_spread():
    run = cached_run({**RKE2, "rancher-ha:serverCount": 5})
    values = releases(run)["rancher"].inputs["values"]
    assert values["replicas"] == 3 and values["antiAffinity"] == "required"


def test_chart_repository_is_a_setting():
    from settings.versions import RANCHER_CHART_REPOSITORIES

    assert RANCHER_CHART_REPOSITORIES["stable"] == "https://releases.rancher.com/server-charts/stable"
    for choice, url in [("latest", "https://releases.rancher.com/server-charts/latest"),
                        ("prime", RANCHER_CHART_REPOSITORIES["prime"]), ("https://mirror.example.com/rancher", "https://mirror.example.com/rancher")]:
        rancher = releases(cached_run({"rancher-ha:rancherChartRepository": choice}))["rancher"]
        assert rancher.inputs["repositoryOpts"]["repo"] == url


def test_reference_copy_matches_shared():
    if not SHARED_REFERENCE.is_dir():
        pytest.skip("shared/reference is not beside this checkout")
    comparison = filecmp.dircmp(SHARED_REFERENCE, REFERENCE_ROOT)
    assert sorted(comparison.left_only + comparison.right_only) == []
    for version in comparison.common_dirs:
        files = ["Chart.yaml", "values.yaml", "values.schema.json"]
        match, mismatch, errors = filecmp.cmpfiles(SHARED_REFERENCE / version, REFERENCE_ROOT / version, files, shallow=False)
        assert mismatch == [] and errors == [], version


def test_a_failed_rancher_upgrade_is_not_rolled_back_by_helm(dev_run):
    """Rancher does not support `helm rollback` across its versions (its way back is a
    rancher-backup restore): the Rancher release must not be atomic. cert-manager keeps
    atomic: its API (cert-manager.io/v1) is the same on both sides of a rollback, and an
    atomic first install leaves no half-installed release behind."""
    found = releases(dev_run)
    assert not found["rancher"].inputs.get("atomic"), found["rancher"].inputs.get("atomic")
    assert found["cert-manager"].inputs["atomic"] is True


@pytest.mark.parametrize("given", ["ingress_certificate_pem", "ingress_private_key_pem"])
def test_an_ingress_certificate_without_its_key_is_refused(given):
    # Once, a certificate without its key wrote a tls-rancher-ingress Secret with tls.key None.
    from components.rancher import RancherArgs

    spec = RancherValuesSpec(hostname="rancher.example.com", replicas=3, layer="l4", tls_source="provided",
                             private_ca=False, agent_tls_mode="strict", ingress_controller="traefik")
    with pytest.raises(ValueError, match="ingress_certificate_pem and ingress_private_key_pem"):
        RancherArgs(provider=None, gate=None, rancher_version="2.14.4", rancher_repository="https://example.com",
                    cert_manager_version="v1.19.2", values_spec=spec, install_cert_manager=False, cert_manager_values={},
                    **{given: "PEM"})
