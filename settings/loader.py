"""Read a stack's configuration from Pulumi and turn it into `Settings`.

All validation failures are collected into one `SettingsError` whose lines each say
`<key> = <value>: <what is wrong>. Fix: <what to do>`, so a bad stack file is fixed in
one pass instead of one `pulumi up` per mistake: keys in a foreign namespace, unknown
keys, each setting's own errors and the cross-setting checks, all in one run.
"""

from __future__ import annotations

import difflib
import json
import typing
from typing import Any, Mapping

from pydantic import ValidationError
from pydantic.fields import FieldInfo

from .model import DERIVED_FROM, ENVIRONMENTS, Settings

PROJECT = "rancher-ha"
SECRET_KEYS = {"tlsPrivateKey", "restoreEncryptionKey"}


class SettingsError(Exception):
    """A stack configuration that cannot produce a working deployment."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__(
            "Invalid stack configuration:\n" + "\n".join(f"  - {line}" for line in problems)
        )


def stack_keys() -> dict[str, FieldInfo]:
    """Stack key (camelCase) -> field info, for every setting a stack file may hold."""
    return {info.alias: info for info in Settings.model_fields.values() if info.alias is not None and info.alias != "region"}


def _decode(key: str, raw: Any) -> Any:
    # Pulumi hands structured values (lists, numbers, booleans) to the program as JSON
    # text; plain strings arrive as they are.
    if not isinstance(raw, str):
        return raw
    try:
        decoded = json.loads(raw)
    except ValueError:
        return raw
    # A string that happens to be valid JSON ("8.4", "2") stays text where text is expected.
    annotation = Settings.model_fields[_field_name(key)].annotation
    if annotation in (str, "str") or str(annotation) in ("typing.Optional[str]", "Optional[str]"):
        return raw
    return decoded


def _field_name(alias: str) -> str:
    for name, info in Settings.model_fields.items():
        if info.alias == alias:
            return name
    raise KeyError(alias)


def _redact(key: str, value: Any) -> Any:
    return "[secret]" if key in SECRET_KEYS else value


# Namespaces of the providers the program uses, and Pulumi's own: a stack file may set
# them (aws:region, aws:profile, kubernetes:...). Any other namespace is a mistake.
PROVIDER_NAMESPACES = ("aws", "kubernetes", "random", "tls", "pulumi")

# Required settings without a default or a derivation: what stands in for one that is
# invalid while the cross-setting checks run (it is marked unknown there, never read).
PLACEHOLDERS: dict[str, Any] = {
    "environment": "dev",
    "hostname": "placeholder.example",
    "hostedZone": "example",
    "adminCidrs": ["192.0.2.0/24"],
    "region": "us-east-1",
}

# What a choice setting is, and why a value that users ask for is not offered.
CHOICE_NOUNS = {
    "environment": "an environment class",
    "distribution": "a Kubernetes distribution this program installs",
    "nodePlacement": "a node placement",
    "loadBalancerType": "a load balancer type",
    "loadBalancerLayer": "a load balancer layer",
    "loadBalancerScheme": "a load balancer scheme",
    "tlsSource": "a certificate source",
    "ingressController": "an ingress controller RKE2 packages",
}
CHOICE_REASONS = {
    ("environment", None): (
        "it selects the safety defaults (deletion protection, Multi-AZ, protect); the stack "
        "itself may have any name"
    ),
    ("distribution", None): "this program installs K3s or RKE2 on EC2 instances, as Rancher's HA guides do",
    ("distribution", "eks"): (
        "EKS is AWS's managed Kubernetes, a different program; this one installs K3s or RKE2 "
        "on EC2 instances, as Rancher's HA guides do"
    ),
    ("loadBalancerType", "alb"): (
        "an ALB speaks HTTP(S) only and cannot carry the Kubernetes API (6443), which is TCP; "
        "Rancher needs TCP pass-through (an NLB) or one address that serves both, which the "
        "NGINX load balancer does at layer 4 or 7"
    ),
    ("nodePlacement", None): "nodes go in the stack's private subnets (egress through NAT or a proxy) or in its public ones",
    ("loadBalancerType", None): "the program builds an AWS NLB or its own NGINX load balancer",
    ("loadBalancerLayer", None): "l4 passes TLS through to Rancher's ingress, l7 ends TLS on NGINX",
    ("loadBalancerScheme", None): "an AWS load balancer is internet-facing or internal",
    ("loadBalancerScheme", "private"): "AWS calls a load balancer reachable only from the VPC and networks routed to it 'internal'",
    ("tlsSource", None): (
        "Rancher's certificate comes from Rancher's own CA (rancher), Let's Encrypt (letsEncrypt), "
        "your PEM files (provided) or a CA the stack generates (generated)"
    ),
    ("ingressController", None): "RKE2 packages ingress-nginx and Traefik (its `ingress-controller` option)",
    ("loadBalancerType", "elb"): (
        "the Classic Load Balancer is AWS's previous generation; the NLB does TCP pass-through "
        "with health checks per port"
    ),
}


def settings_from_config(config: Mapping[str, Any], stack: str) -> Settings:
    """Validate a stack's whole config map (`<namespace>:<key>` -> value)."""
    values: dict[str, Any] = {}
    foreign: dict[str, Any] = {}
    for full_key, value in config.items():
        namespace, _, key = full_key.partition(":")
        if namespace == PROJECT:
            values[key] = value
        elif namespace not in PROVIDER_NAMESPACES:
            foreign[full_key] = value
    return settings_from_values(values, stack=stack, region=config.get("aws:region"), foreign=foreign)


def settings_from_values(
    values: Mapping[str, Any], stack: str, region: str | None, foreign: Mapping[str, Any] | None = None
) -> Settings:
    """Validate raw `<key>: value` pairs (without the project prefix).

    Every mistake is reported in one `SettingsError`: keys in another namespace, unknown
    keys, each setting's own error, and every cross-setting check that the valid settings
    allow to be evaluated.
    """
    known = stack_keys()
    problems: list[str] = [_foreign_problem(full_key, value) for full_key, value in sorted((foreign or {}).items())]
    data: dict[str, Any] = {}
    for key, raw in sorted(values.items()):
        if key not in known:
            close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
            hint = f"Did you mean '{close[0]}'?" if close else "See the settings table in README.md."
            problems.append(
                f"{PROJECT}:{key} = {_redact(key, raw)!r}: is not a setting of this program. Fix: {hint}"
            )
            continue
        data[key] = _decode(key, raw)

    if "environment" not in data and stack in ENVIRONMENTS:
        data["environment"] = stack
    if region is not None:
        data["region"] = region

    try:
        settings = Settings.model_validate(data)
    except ValidationError as error:
        problems.extend(_explain(error, data))
    else:
        if not problems:
            return settings
    raise SettingsError(problems)


def _foreign_problem(full_key: str, value: Any) -> str:
    namespace, _, key = full_key.partition(":")
    known = stack_keys()
    close = [key] if key in known else difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    fix = f"rename it to '{PROJECT}:{close[0]}'" if close else f"remove it, or put the setting under '{PROJECT}:'"
    return (
        f"{full_key} = {_redact(key, value)!r}: is in namespace '{namespace}', which is neither this "
        f"project's ('{PROJECT}') nor a provider's ({', '.join(PROVIDER_NAMESPACES)}), so the program "
        f"would ignore it. Fix: {fix}"
    )


def _explain(error: ValidationError, data: Mapping[str, Any]) -> list[str]:
    items = error.errors()
    field_items = [item for item in items if item["loc"]]
    if not field_items:
        # Only cross-field checks failed; they already say "<key> = <value>: ..." per line.
        return [line for item in items for line in item["msg"].removeprefix("Value error, ").splitlines()]
    invalid = {str(item["loc"][0]) for item in field_items}
    # A default derived from an invalid setting is not the user's mistake: say it once.
    derived_unknown = {
        key for key, inputs in DERIVED_FROM.items() if key not in data and invalid.intersection(inputs)
    }
    lines = [_explain_field(item, data) for item in field_items if str(item["loc"][0]) not in derived_unknown]
    return lines + _cross_problems(data, invalid | derived_unknown)


def _cross_problems(data: Mapping[str, Any], unknown: set[str]) -> list[str]:
    """The cross-setting checks that can be evaluated without the settings in `unknown`."""
    substitute = {key: value for key, value in data.items() if key not in unknown}
    for key in unknown:
        if key in PLACEHOLDERS and key not in DERIVED_FROM:
            substitute[key] = PLACEHOLDERS[key]
    try:
        partial = Settings.model_validate(substitute, context={"fields_only": True})
    except ValidationError:
        return []  # no partial view can be built: the settings' own errors stand alone
    return partial.with_unknown(unknown).combination_problems()


def _choices(annotation: Any) -> list[str]:
    """The values of a Literal setting, also when it is optional (Literal[...] | None)."""
    found: list[str] = []
    for option in typing.get_args(annotation):
        if typing.get_origin(option) is typing.Literal:
            found += _choices(option)
        elif option is not type(None):
            found.append(str(option))
    return found


def _explain_field(item: Any, data: Mapping[str, Any]) -> str:
    key = str(item["loc"][0])
    message = item["msg"].removeprefix("Value error, ")
    prefix = "aws:" if key == "region" else f"{PROJECT}:"
    value = _redact(key, data.get(key, item.get("input")))
    info = stack_keys().get(key) or Settings.model_fields["region"]
    extra = info.json_schema_extra  # a dict here (model._doc); pydantic also allows a callable
    validation = extra.get("validation", "") if extra is not None and not callable(extra) else ""
    kind = item["type"]
    if kind == "missing":
        return f"{prefix}{key} is required but not set. Fix: {_missing_fix(key)}"
    if kind in ("literal_error", "enum"):
        *others, last = _choices(info.annotation)
        options = f"{', '.join(others)} or {last}"
        reason = CHOICE_REASONS.get((key, str(value).lower())) or CHOICE_REASONS.get((key, None))
        noun = CHOICE_NOUNS.get(key, "one of the choices")
        because = f": {reason}" if reason else ""
        return f"{prefix}{key} = {value!r}: is not {noun}{because}. Fix: use {options}"
    if kind.startswith("int_"):
        return f"{prefix}{key} = {value!r}: is not a whole number. Fix: write an integer: {validation}"
    if kind.startswith("bool_"):
        return f"{prefix}{key} = {value!r}: is not a boolean. Fix: write true or false"
    if kind.startswith("list_"):
        return f"{prefix}{key} = {value!r}: is not a list. Fix: write a YAML list ({validation})"
    if kind.startswith("string_"):
        return f"{prefix}{key} = {value!r}: is not text. Fix: write a string ({validation})"
    if "Fix:" not in message:
        message = f"{message}. Fix: {validation}"
    return f"{prefix}{key} = {value!r}: {message}"


def _missing_fix(key: str) -> str:
    fixes = {
        "environment": "set environment to dev, staging or prod (stacks named dev/staging/prod get it from the name)",
        "region": "pulumi config set aws:region <region>",
        "adminCidrs": "list the networks that may reach the Kubernetes API, e.g. ['203.0.113.10/32']",
    }
    return fixes.get(key, f"pulumi config set {key} <value>")


def load_settings() -> Settings:
    """Read the current stack's config through the Pulumi runtime."""
    import pulumi
    from pulumi.runtime.config import CONFIG, get_config_env

    config: dict[str, Any] = {}
    for source in (get_config_env(), CONFIG.get()):
        config.update(source)
    return settings_from_config(config, stack=pulumi.get_stack())
