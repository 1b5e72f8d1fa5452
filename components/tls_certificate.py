"""Rancher's serving certificate when it does not come from cert-manager: either the
pair the user provided, or a private CA and server certificate generated here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pulumi
import pulumi_tls as tls

from .cluster_ca import self_signed_ca
from .naming import child
from .renewal import renewal_window

SERVER_VALIDITY_HOURS = 397 * 24  # the browser limit for a TLS server certificate


@dataclass
class RancherCertificateArgs:
    hostname: str
    source: str  # provided | generated
    provided_certificate: Optional[str] = None
    provided_private_key: Optional[pulumi.Input[str]] = None
    provided_ca_certificate: Optional[str] = None

    def __post_init__(self) -> None:
        if self.source == "provided":
            self.provided_pair()

    def provided_pair(self) -> tuple[str, pulumi.Input[str]]:
        """The provided certificate and key, both present."""
        if self.provided_certificate is None or self.provided_private_key is None:
            missing = "provided_certificate" if self.provided_certificate is None else "provided_private_key"
            raise ValueError(f"RancherCertificate source 'provided' needs {missing}")
        return self.provided_certificate, self.provided_private_key


class RancherCertificate(pulumi.ComponentResource):
    certificate_pem: pulumi.Output[str]
    private_key_pem: pulumi.Output[str]
    ca_pem: Optional[pulumi.Output[str]]  # set when agents must be given the CA (privateCA)

    def __init__(self, name: str, args: RancherCertificateArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("rancher-ha:pki:RancherCertificate", name, None, opts)
        if args.source == "provided":
            certificate, private_key = args.provided_pair()
            self.certificate_pem = pulumi.Output.from_input(certificate)
            self.private_key_pem = pulumi.Output.secret(private_key)
            self.ca_pem = pulumi.Output.from_input(args.provided_ca_certificate) if args.provided_ca_certificate else None
        else:
            ca_key, ca = self_signed_ca(self, f"{name}-ca", f"rancher-ha CA for {args.hostname}")
            key = tls.PrivateKey(f"{name}-server", algorithm="ECDSA", ecdsa_curve="P256", opts=child(self))
            request = tls.CertRequest(
                f"{name}-server",
                private_key_pem=key.private_key_pem,
                dns_names=[args.hostname],
                subject=tls.CertRequestSubjectArgs(common_name=args.hostname),
                opts=child(self),
            )
            certificate = tls.LocallySignedCert(
                f"{name}-server",
                cert_request_pem=request.cert_request_pem,
                ca_private_key_pem=ca_key.private_key_pem,
                ca_cert_pem=ca.cert_pem,
                validity_period_hours=SERVER_VALIDITY_HOURS,
                allowed_uses=["server_auth", "digital_signature", "key_encipherment"],
                # Re-issued by the first `pulumi up` of every validity half (components/renewal.py);
                # NGINX picks the new pair up from SSM within minutes, nothing is replaced.
                opts=child(self, replacement_trigger=renewal_window(SERVER_VALIDITY_HOURS)),
            )
            self.certificate_pem = certificate.cert_pem
            self.private_key_pem = pulumi.Output.secret(key.private_key_pem)
            self.ca_pem = ca.cert_pem
        self.register_outputs({"certificate_pem": self.certificate_pem, "ca_pem": self.ca_pem})
