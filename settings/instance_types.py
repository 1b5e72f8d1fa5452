"""Memory and vCPUs of EC2 instance types, derived from the naming scheme.

Rancher's own minimum for a management server is 4 GiB. AWS names encode the size
(vCPUs) and the family encodes GiB per vCPU, which is enough to refuse an obviously
too-small node without a cloud call. Families we cannot reason about are accepted:
refusing a valid type would be worse than not checking it.
"""

from __future__ import annotations

import re

INSTANCE_TYPE_PATTERN = re.compile(r"^([a-z]+)(\d+)([a-z-]*)\.(nano|micro|small|medium|large|metal|\d*xlarge)$")

# Burstable types break the ratio rule at the small end.
BURSTABLE_MEMORY_GIB = {"nano": 0.5, "micro": 1, "small": 2, "medium": 4, "large": 8, "xlarge": 16, "2xlarge": 32}
GIB_PER_VCPU = {"c": 2, "m": 4, "r": 8, "x": 16, "z": 8}
SIZE_VCPUS = {"medium": 1, "large": 2, "xlarge": 4}


def validate_instance_type(value: str) -> str:
    if not INSTANCE_TYPE_PATTERN.match(value):
        raise ValueError(
            "is not an EC2 instance type. Fix: use a name such as 'm6i.xlarge' or 't3.large'"
        )
    return value


def memory_gib(instance_type: str) -> float | None:
    """Best-effort memory size; None where the family is not one we model."""
    match = INSTANCE_TYPE_PATTERN.match(instance_type)
    if not match:
        return None
    family, _generation, _attributes, size = match.groups()
    if family == "t":
        return BURSTABLE_MEMORY_GIB.get(size)
    ratio = GIB_PER_VCPU.get(family)
    count = vcpus(instance_type)
    if ratio is None or count is None:
        return None
    return count * ratio


# vCPUs by size (AWS, "Amazon EC2 instance types", specifications of the general purpose,
# compute and memory optimized families): burstable T3/T3a/T4g have 2 vCPUs from nano to
# large; T2 has 1 up to small; every other family has 1 at medium, 2 at large, 4 per xlarge.
BURSTABLE_VCPUS = {"nano": 2, "micro": 2, "small": 2, "medium": 2, "large": 2, "xlarge": 4, "2xlarge": 8}
T2_VCPUS = {**BURSTABLE_VCPUS, "nano": 1, "micro": 1, "small": 1}
# The families of the "Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances"
# vCPU quota (L-1216C47A); other families have quotas of their own.
STANDARD_QUOTA_FAMILIES = frozenset("acdhimrtz") | {"im", "is"}


def vcpus(instance_type: str) -> int | None:
    """vCPUs of a type by its name; None where the name does not say (metal, odd sizes)."""
    match = INSTANCE_TYPE_PATTERN.match(instance_type)
    if not match:
        return None
    family, generation, _attributes, size = match.groups()
    if family == "t":
        return (T2_VCPUS if generation == "2" else BURSTABLE_VCPUS).get(size)
    if size in SIZE_VCPUS:
        return SIZE_VCPUS[size]
    if size.endswith("xlarge") and size[:-6].isdigit():
        return int(size[:-6]) * 4
    return None


def standard_quota_family(instance_type: str) -> bool:
    match = INSTANCE_TYPE_PATTERN.match(instance_type)
    return bool(match) and match.group(1) in STANDARD_QUOTA_FAMILIES
