"""No secret in user data, tags, plain outputs, non-secret inputs or logs."""

import json

import pytest

from conftest import NGINX_L7, PROXY, RKE2, cached_run
from offline.runner import STACKS_DIR, run_stack

PEM_CERT = "-----BEGIN CERTIFICATE-----\nMIIBprovided\n-----END CERTIFICATE-----\n"
CONFIG_SECRET_KEY = "-----BEGIN EC PRIVATE KEY-----\nCONFIGSECRETvalue0123456789\n-----END EC PRIVATE KEY-----\n"
RESTORE_KEY = "UkVTVE9SRWtleWZyb21UaGVPbGRTdGFja18zMmJ5dGU="  # base64 of 32 bytes, a config secret

SHAPES = {
    "k3s-nlb": {},
    "rke2-nlb": RKE2,
    "k3s-nginx-l7": NGINX_L7,
    "rke2-nginx-l4-proxy": {**RKE2, "rancher-ha:loadBalancerType": "nginx", **PROXY},
    "provided-cert": {"rancher-ha:tlsSource": "provided", "rancher-ha:tlsCertificate": PEM_CERT, "rancher-ha:tlsPrivateKey": CONFIG_SECRET_KEY},
    "backup-restore": {"rancher-ha:rancherBackups": True, "rancher-ha:restoreFromBackup": "old-2026-12-07T06-00-00Z.tar.gz.enc",
                       "rancher-ha:restoreEncryptionKey": RESTORE_KEY},
    "l7-provided": {**NGINX_L7, "rancher-ha:tlsSource": "provided", "rancher-ha:tlsCertificate": PEM_CERT, "rancher-ha:tlsPrivateKey": CONFIG_SECRET_KEY},
}
# Inputs that legitimately carry secrets, provided the program marked them secret.
SECRET_CARRIERS = {
    "aws:ssm/parameter:Parameter": {"value"},
    "aws:rds/instance:Instance": {"password"},
    "pulumi-python:dynamic/rancher-ha:ApiGate": {"clientKeyPem"},
    "pulumi-python:dynamic/rancher-ha:ClusterMember": {"clientKeyPem"},
    "pulumi-python:dynamic/rancher-ha:KubernetesUpgradeWait": {"clientKeyPem"},
    "pulumi-python:dynamic/rancher-ha:KubernetesVersionCheck": {"clientKeyPem"},
    "pulumi-python:dynamic/rancher-ha:ObjectReady": {"clientKeyPem"},
    "pulumi:providers:kubernetes": {"kubeconfig"},
    "kubernetes:helm.sh/v3:Release": {"values"},
    "kubernetes:core/v1:Secret": {"stringData"},
    # pulumi-tls takes keys as inputs; the provider stores them as secrets.
    "tls:index/selfSignedCert:SelfSignedCert": {"privateKeyPem"},
    "tls:index/certRequest:CertRequest": {"privateKeyPem"},
    "tls:index/locallySignedCert:LocallySignedCert": {"caPrivateKeyPem"},
}


def _fragments(run, extra=()):
    """Distinctive pieces of every generated secret: whole values and PEM bodies."""
    pieces = set()
    for value in set(run.secret_values) | set(extra):
        value = value.strip()
        if value.startswith("-----BEGIN"):
            pieces.update(line for line in value.splitlines()[1:-1] if len(line) >= 16)
        else:
            pieces.add(value)
    # The DSN embeds the database password; include derived secrets as they appear.
    return {piece for piece in pieces if len(piece) >= 12}


STACK_FILES = sorted(p.name.split(".")[1] for p in STACKS_DIR.glob("Pulumi.*.yaml"))


@pytest.mark.parametrize("shape", sorted(SHAPES) + [f"stack:{name}" for name in STACK_FILES])
def test_secrets_sweep(shape):
    run = run_stack(shape.split(":", 1)[1]) if shape.startswith("stack:") else cached_run(SHAPES[shape])
    fragments = _fragments(run, extra=([CONFIG_SECRET_KEY] if "provided" in shape else [])
                           + ([RESTORE_KEY] if "restore" in shape else []))
    assert fragments, "the sweep found no generated secrets to look for"

    def leaks(text):
        return [piece for piece in fragments if piece in text]

    for resource in run.resources:
        carriers = SECRET_CARRIERS.get(resource.type, set())
        for key, value in resource.inputs.items():
            text = json.dumps(value, default=str)
            if key in carriers:
                assert not leaks(text) or key in resource.secret_inputs, f"{resource.type} {resource.name}.{key} not marked secret"
                continue
            assert not leaks(text), f"secret in {resource.type} {resource.name}.{key}"
        assert not leaks(json.dumps(resource.inputs.get("tags", {}))), resource.name
    for instance in run.of_type("aws:ec2/instance:Instance"):
        assert not leaks(instance.inputs["userData"]), instance.name
    for name, output in run.outputs.items():
        if not output.secret:
            assert not leaks(json.dumps(output.value, default=str)), f"secret in plain output {name}"
    for line in run.logs:
        assert not leaks(line)


def test_secret_outputs_are_marked(dev_run):
    secret_outputs = {name for name, output in dev_run.outputs.items() if output.secret}
    assert secret_outputs == {"kubeconfig", "bootstrapPassword"}


def test_the_sweep_would_catch_a_leak(dev_run):
    fragments = _fragments(dev_run)
    token = next(p for p in dev_run.of_type("aws:ssm/parameter:Parameter") if p.inputs["name"].endswith("/token"))
    assert any(piece in token.inputs["value"] for piece in fragments)
