"""EC2 instance types: the API's own list, and memory and vCPUs derived from the naming scheme.

The list is the `InstanceType` enum of the EC2 service model that botocore ships
(`botocore/data/ec2/<api version>/service-2.json`, pinned in requirements.txt): every
type the EC2 API accepts, so a name that is not in it (`t3.24xlarge`, `q9z.large`) is
refused before any cloud call. That model lists names only, without memory or vCPUs
(memory comes only from the DescribeInstanceTypes API, a cloud call), and no packaged
list with memory was found; so memory is derived from the name: the size gives the
vCPUs and the family the GiB per vCPU, enough to refuse an obviously too-small node.
Families we cannot reason about get no memory check: refusing a valid type would be
worse than not checking it.
"""

from __future__ import annotations

import difflib
import functools
import re
from typing import TypedDict, cast

# botocore ships no type information (no py.typed, no stubs in the pinned set).
import botocore  # pyright: ignore[reportMissingTypeStubs]
from botocore.loaders import Loader  # pyright: ignore[reportMissingTypeStubs]

INSTANCE_TYPE_PATTERN = re.compile(r"^([a-z]+)(\d+)([a-z-]*)\.(nano|micro|small|medium|large|metal|\d*xlarge)$")

# Burstable types break the ratio rule at the small end.
BURSTABLE_MEMORY_GIB = {"nano": 0.5, "micro": 1, "small": 2, "medium": 4, "large": 8, "xlarge": 16, "2xlarge": 32}
GIB_PER_VCPU = {"c": 2, "m": 4, "r": 8, "x": 16, "z": 8}
SIZE_VCPUS = {"medium": 1, "large": 2, "xlarge": 4}
SIZE_ORDER = ("nano", "micro", "small", "medium", "large", "xlarge")


class _EnumShape(TypedDict):
    enum: list[str]


class _ServiceModel(TypedDict):
    """The part of a botocore service model read here: the InstanceType shape."""

    shapes: dict[str, _EnumShape]


@functools.lru_cache(maxsize=1)
def _ec2_model() -> _ServiceModel:
    model = Loader().load_service_model("ec2", "service-2")  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]
    return cast(_ServiceModel, model)


@functools.lru_cache(maxsize=1)
def instance_types() -> frozenset[str]:
    """Every instance type the EC2 API accepts (botocore's EC2 service model)."""
    return frozenset(_ec2_model()["shapes"]["InstanceType"]["enum"])


SOURCE = f"botocore {botocore.__version__}, data/ec2/<api version>/service-2.json, shape InstanceType"


def _size_key(size: str) -> tuple[int, float]:
    if size in SIZE_ORDER:
        return (0, SIZE_ORDER.index(size))
    if size.endswith("xlarge") and size[:-6].isdigit():
        return (1, int(size[:-6]))
    return (2, 0)  # metal, metal-24xl ...


def _sizes(family: str) -> list[str]:
    sizes = [name.split(".", 1)[1] for name in instance_types() if name.split(".", 1)[0] == family]
    return sorted(sizes, key=_size_key)


def validate_instance_type(value: str) -> str:
    if value in instance_types():
        return value
    family = value.split(".", 1)[0]
    sizes = _sizes(family)
    if sizes:
        raise ValueError(
            f"is not an EC2 instance type: {family} comes in {', '.join(sizes)}. "
            f"Fix: pick one of those sizes, e.g. '{family}.{sizes[min(len(sizes) - 1, 4)]}'"
        )
    close = difflib.get_close_matches(value, sorted(instance_types()), n=3, cutoff=0.6)
    hint = f"did you mean {' or '.join(repr(name) for name in close)}?" if close else "use a type such as 'm6i.xlarge' or 't3.large'"
    raise ValueError(
        f"is not an EC2 instance type: it is not in the EC2 API's list of instance types ({len(instance_types())} types, "
        f"botocore {botocore.__version__}). Fix: {hint}"
    )


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
