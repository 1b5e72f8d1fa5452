"""First-boot rehearsal of the program's instances: cloud-init replayed in a sandbox."""

from .sandbox import BootResult, FileEntry, Files, LateParameter, RehearsalError, Scenario, boot, pem_self_signed

__all__ = ["BootResult", "FileEntry", "Files", "LateParameter", "RehearsalError", "Scenario", "boot", "pem_self_signed"]
