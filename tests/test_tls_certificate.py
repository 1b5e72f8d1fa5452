"""Rancher's serving certificate when it does not come from cert-manager."""

import pytest

from components.tls_certificate import RancherCertificateArgs


@pytest.mark.parametrize("missing", ["provided_certificate", "provided_private_key"])
def test_a_provided_certificate_needs_both_halves(missing):
    # Once, a missing half became Output[None], found only when the Secret was written.
    pair = {"provided_certificate": "CERT", "provided_private_key": "KEY", missing: None}
    with pytest.raises(ValueError, match=missing):
        RancherCertificateArgs(hostname="rancher.example.com", source="provided", **pair)
    assert RancherCertificateArgs(hostname="rancher.example.com", source="generated").source == "generated"
