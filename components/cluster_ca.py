"""The cluster's certificate authorities and the admin client certificate.

Generating the CAs here (instead of letting the first server invent them) is what lets
the program build a working kubeconfig without SSH: the admin certificate is signed by
our client CA, and the kubeconfig trusts our server CA. The CA keys go to the nodes
only through SSM SecureStrings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pulumi
import pulumi_tls as tls

from .naming import child
from .renewal import renewal_window

CA_VALIDITY_HOURS = 10 * 365 * 24  # what K3s/RKE2 give their own CAs
ADMIN_VALIDITY_HOURS = 365 * 24
CA_USES = ["cert_signing", "crl_signing", "digital_signature", "key_encipherment"]

# file stem under server/tls/ -> CA common name
CERTIFICATE_AUTHORITIES = {
    "server-ca": "server-ca",
    "client-ca": "client-ca",
    "request-header-ca": "request-header-ca",
    "etcd/server-ca": "etcd-server-ca",
    "etcd/peer-ca": "etcd-peer-ca",
}
ADMIN_COMMON_NAME = "system:admin"
ADMIN_ORGANIZATION = "system:masters"


def self_signed_ca(parent: pulumi.Resource, name: str, common_name: str) -> tuple[tls.PrivateKey, tls.SelfSignedCert]:
    """An ECDSA P-256 CA valid for ten years, as a child of `parent`."""
    key = tls.PrivateKey(name, algorithm="ECDSA", ecdsa_curve="P256", opts=child(parent))
    certificate = tls.SelfSignedCert(
        name,
        private_key_pem=key.private_key_pem,
        is_ca_certificate=True,
        validity_period_hours=CA_VALIDITY_HOURS,
        allowed_uses=CA_USES,
        subject=tls.SelfSignedCertSubjectArgs(common_name=common_name),
        opts=child(parent),
    )
    return key, certificate


@dataclass
class ClusterCaArgs:
    distribution: str  # k3s | rke2, used in the CA names


class ClusterCa(pulumi.ComponentResource):
    files: dict[str, pulumi.Output[str]]  # server/tls/ relative path -> PEM (secret for keys)
    server_ca_pem: pulumi.Output[str]
    admin_cert_pem: pulumi.Output[str]
    admin_key_pem: pulumi.Output[str]

    def __init__(self, name: str, args: ClusterCaArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("rancher-ha:pki:ClusterCa", name, None, opts)
        self.files = {}
        certificates: dict[str, tls.SelfSignedCert] = {}
        keys: dict[str, tls.PrivateKey] = {}
        for stem, common_name in CERTIFICATE_AUTHORITIES.items():
            key, certificate = self_signed_ca(self, f"{name}-{stem.replace('/', '-')}", f"{args.distribution}-{common_name}")
            keys[stem], certificates[stem] = key, certificate
            self.files[f"{stem}.crt"] = certificate.cert_pem
            self.files[f"{stem}.key"] = pulumi.Output.secret(key.private_key_pem)

        # Service-account signing key: RSA, as K3s/RKE2 generate it.
        service_key = tls.PrivateKey(f"{name}-service", algorithm="RSA", rsa_bits=2048, opts=child(self))
        self.files["service.key"] = pulumi.Output.secret(service_key.private_key_pem)

        admin_key = tls.PrivateKey(f"{name}-admin", algorithm="ECDSA", ecdsa_curve="P256", opts=child(self))
        admin_request = tls.CertRequest(
            f"{name}-admin",
            private_key_pem=admin_key.private_key_pem,
            subject=tls.CertRequestSubjectArgs(common_name=ADMIN_COMMON_NAME, organization=ADMIN_ORGANIZATION),
            opts=child(self),
        )
        admin_certificate = tls.LocallySignedCert(
            f"{name}-admin",
            cert_request_pem=admin_request.cert_request_pem,
            ca_private_key_pem=keys["client-ca"].private_key_pem,
            ca_cert_pem=certificates["client-ca"].cert_pem,
            validity_period_hours=ADMIN_VALIDITY_HOURS,
            allowed_uses=["client_auth", "digital_signature", "key_encipherment"],
            # Re-issued by the first `pulumi up` of every half year (components/renewal.py).
            opts=child(self, replacement_trigger=renewal_window(ADMIN_VALIDITY_HOURS)),
        )

        self.server_ca_pem = certificates["server-ca"].cert_pem
        self.admin_cert_pem = admin_certificate.cert_pem
        self.admin_key_pem = pulumi.Output.secret(admin_key.private_key_pem)
        self.register_outputs({"server_ca_pem": self.server_ca_pem, "admin_cert_pem": self.admin_cert_pem})
