"""First-boot rehearsal of the program's instances: cloud-init replayed in a sandbox."""

from .sandbox import BootResult, FileEntry, Files, LateParameter, RehearsalError, Scenario, boot, pem_self_signed

__all__ = ["BootResult", "FileEntry", "Files", "LateParameter", "RehearsalError", "Scenario", "boot", "pem_self_signed"]


def with_real_pems(parameters: dict, hostname: str) -> dict:
    """The mocks make fake PEM text for certificates and keys, which `nginx -t` (and any
    real consumer) cannot load. Substitute a real self-signed pair per `<stem>.crt` /
    `<stem>.key`, keeping every parameter NAME exactly as the program created it."""
    import re

    store = {}
    for name, value in parameters.items():
        stem = re.sub(r"\.(crt|key)$", "", name)
        common_name = hostname if stem.endswith("/nginx/tls") else stem.rsplit("/", 1)[-1]
        if value.startswith("-----BEGIN CERTIFICATE-----"):
            value = pem_self_signed(common_name)[0]
        elif value.startswith("-----BEGIN") and "PRIVATE KEY-----" in value.splitlines()[0]:
            value = pem_self_signed(common_name)[1]
        store[name] = value
    return store


__all__.append("with_real_pems")
