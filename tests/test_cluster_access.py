"""Cluster access: generated CAs, the admin certificate, the kubeconfig, the gate."""

import base64

import yaml

from components.cluster_ca import ADMIN_COMMON_NAME, ADMIN_ORGANIZATION


def test_kubeconfig_points_at_the_stable_api_name_and_trusts_the_generated_server_ca(dev_run):
    kubeconfig = yaml.safe_load(dev_run.outputs["kubeconfig"].value)
    (cluster,) = kubeconfig["clusters"]
    # A name the stack owns, not the load balancer's generated DNS name.
    assert cluster["cluster"]["server"] == "https://api.rancher.dev.example.com:6443"
    assert cluster["cluster"]["tls-server-name"] == "rancher.dev.example.com"
    assert dev_run.outputs["kubernetesApiUrl"].value == "https://api.rancher.dev.example.com:6443"
    (record,) = [r for r in dev_run.of_type("aws:route53/record:Record") if r.inputs["name"] == "api.rancher.dev.example.com"]
    (balancer,) = dev_run.of_type("aws:lb/loadBalancer:LoadBalancer")
    assert record.inputs["aliases"][0]["name"] == balancer.outputs["dnsName"]
    server_ca = next(c for c in dev_run.of_type("tls:index/selfSignedCert:SelfSignedCert") if c.name == "cluster-ca-server-ca")
    assert base64.b64decode(cluster["cluster"]["certificate-authority-data"]).decode() == server_ca.outputs["certPem"]
    (user,) = kubeconfig["users"]
    admin = next(c for c in dev_run.of_type("tls:index/locallySignedCert:LocallySignedCert") if c.name == "cluster-ca-admin")
    assert base64.b64decode(user["user"]["client-certificate-data"]).decode() == admin.outputs["certPem"]
    assert kubeconfig["current-context"] == "rancher-ha-dev"


def test_tls_san_holds_the_stack_names_and_no_load_balancer_output(dev_run):
    from helpers import server_instances, written_file
    from rendering.cloud_init import BASE_CONFIG_PATH

    lb = dev_run.outputs["loadBalancerAddress"].value
    for instance in server_instances(dev_run):
        assert yaml.safe_load(written_file(instance, BASE_CONFIG_PATH)["content"])["tls-san"] == [
            "rancher.dev.example.com", "api.rancher.dev.example.com"]
        assert lb not in instance.inputs["userData"]


def test_admin_certificate_subject_and_signer(dev_run):
    (request,) = dev_run.of_type("tls:index/certRequest:CertRequest")
    assert request.inputs["subject"] == {"commonName": ADMIN_COMMON_NAME, "organization": ADMIN_ORGANIZATION}
    assert (ADMIN_COMMON_NAME, ADMIN_ORGANIZATION) == ("system:admin", "system:masters")
    admin = next(c for c in dev_run.of_type("tls:index/locallySignedCert:LocallySignedCert") if c.name == "cluster-ca-admin")
    client_ca = next(c for c in dev_run.of_type("tls:index/selfSignedCert:SelfSignedCert") if c.name == "cluster-ca-client-ca")
    assert admin.inputs["caCertPem"] == client_ca.outputs["certPem"]
    assert set(admin.inputs["allowedUses"]) == {"client_auth", "digital_signature", "key_encipherment"}


def test_all_cluster_ca_files_are_generated(dev_run):
    names = {c.name for c in dev_run.of_type("tls:index/selfSignedCert:SelfSignedCert")}
    assert names == {f"cluster-ca-{n}" for n in ("server-ca", "client-ca", "request-header-ca", "etcd-server-ca", "etcd-peer-ca")}
    assert all(c.inputs["isCaCertificate"] for c in dev_run.of_type("tls:index/selfSignedCert:SelfSignedCert"))
    service = next(k for k in dev_run.of_type("tls:index/privateKey:PrivateKey") if k.name == "cluster-ca-service")
    assert service.inputs["algorithm"] == "RSA"


def test_no_ca_private_key_in_any_user_data(dev_run):
    keys = [k.outputs["privateKeyPem"] for k in dev_run.of_type("tls:index/privateKey:PrivateKey")]
    for instance in dev_run.of_type("aws:ec2/instance:Instance"):
        for key in keys:
            assert key.strip().splitlines()[1] not in instance.inputs["userData"]


def test_gate_and_provider(dev_run):
    (gate,) = dev_run.of_type("pulumi-python:dynamic/rancher-ha:ApiGate")
    lb = dev_run.outputs["loadBalancerAddress"].value
    # It connects to the load balancer and checks the certificate for the API name.
    # ...checking the certificate for the Rancher hostname: in every server's tls-san,
    # also on servers of the first release, which predate apiHostname.
    assert gate.inputs["url"] == f"https://{lb}:6443" and gate.inputs["serverName"] == "rancher.dev.example.com"
    assert gate.inputs["timeoutSeconds"] == 1200
    assert gate.inputs["expectedNodes"] == dev_run.outputs["nodePrivateIps"].value
    assert "clientKeyPem" in gate.secret_inputs
    # depends_on a component means on its children: instances and target registrations.
    waited = {r.type for r in dev_run.resources if r.urn in set(gate.dependencies)}
    # The whole API path: the gate is deleted after everything in the cluster, and before it.
    assert {"aws:ec2/instance:Instance", "aws:lb/targetGroupAttachment:TargetGroupAttachment", "aws:lb/listener:Listener",
            "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule", "aws:ec2/route:Route", "aws:ec2/natGateway:NatGateway",
            "aws:rds/instance:Instance", "aws:route53/record:Record"} <= waited
    instances = {i.urn for i in dev_run.of_type("aws:ec2/instance:Instance")}
    assert instances <= set(gate.dependencies)
    (provider,) = dev_run.of_type("pulumi:providers:kubernetes")
    assert provider.inputs["clusterIdentifier"] == "rancher-ha-dev"
    assert gate.urn in provider.dependencies
    assert "kubeconfig" in provider.secret_inputs


def test_every_kubernetes_resource_waits_for_the_gate(dev_run):
    (gate,) = dev_run.of_type("pulumi-python:dynamic/rancher-ha:ApiGate")
    kubernetes = [r for r in dev_run.resources if r.type.startswith("kubernetes:") and not r.type.startswith("pulumi:providers")]
    assert len(kubernetes) >= 3
    for resource in kubernetes:
        assert gate.urn in resource.dependencies, resource.name
        provider = dev_run.of_type("pulumi:providers:kubernetes")[0].urn
        assert resource.provider.startswith(provider)
        # A destroy that takes the cluster with it skips `helm uninstall` and friends.
        assert resource.deleted_with == provider, resource.name
