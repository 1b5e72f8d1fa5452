"""The main job, offline: render a stack without cloud credentials or the Pulumi CLI.

Runs the real program (settings, components, templates) under deterministic mocks and
writes what a reviewer needs to see into a folder:

  summary.md                  counts by type, endpoints, what is reachable from the internet, AWS quotas
  resources.yaml              the resource tree: type, name, parent, inputs (secrets redacted)
  machines/<machine>/user-data.yaml  what cloud-init does with the machine's user data: the
                              files it writes (each shown as its own file) and the commands it runs
  machines/<machine>/files/<path>    each of those files as the machine receives it (boot
                              scripts, the K3s/RKE2 base config.yaml, systemd units, proxy settings)
  nginx/nginx.conf            the NGINX load balancer's configuration, if any
  helm/<release>.values.yaml  the Helm values (secrets redacted)

Values the offline mocks invented (ids, addresses, endpoints, ARNs, the account) are marked
`«mock:…»` wherever they appear: they stand for what AWS will assign. Two runs of the same
stack write byte-identical files. A bad stack exits 2 with the
settings error. Usage: python -m tools.render <stack> [<stack> ...] | --all [--out DIR]

  --dump-state FILE  write the stacks' registrations as JSON instead of rendering (tools/plan.py)
  --plan BASE_REF    print the offline plan (offline/plan.py) from BASE_REF to the working tree
  --diff BASE_REF    write the render's diff from BASE_REF to the working tree (tools/render_diff.py)
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from offline import quotas  # noqa: E402
from offline.mocks import Registration  # noqa: E402
from offline.runner import STACKS_DIR, MockRun, run_stack  # noqa: E402

from offline import machine_files  # noqa: E402
from settings import SettingsError  # noqa: E402

REDACTED = "[secret]"
MOCK_MARK = "«mock:{}»"
WORLD = ("0.0.0.0/0", "::/0")


def _redact(value: Any, secrets: set[str]) -> Any:
    if isinstance(value, dict):
        return {key: _redact(item, secrets) for key, item in value.items()}
    if isinstance(value, list):
        return [_redact(item, secrets) for item in value]
    if isinstance(value, str):
        # Longest first and in a fixed order, so overlapping secrets redact the same way every run.
        for secret in sorted(secrets, key=lambda piece: (-len(piece), piece)):
            if secret and secret in value:
                value = value.replace(secret, REDACTED)
    return value


def _redact_paths(inputs: dict, paths: list[str]) -> dict:
    redacted = dict(inputs)
    for path in paths:
        top = path.split(".")[0].split("[")[0]
        if top in redacted:
            redacted[top] = REDACTED
    return redacted


def _dump(document: Any) -> str:
    return yaml.safe_dump(document, default_flow_style=False, sort_keys=True, width=120, allow_unicode=True)


def _secret_strings(run: MockRun) -> set[str]:
    """Every generated secret, and the PEM bodies of generated keys."""
    pieces: set[str] = set()
    for value in run.secret_values:
        pieces.add(value.strip())
        if value.strip().startswith("-----BEGIN"):
            pieces.update(line for line in value.strip().splitlines()[1:-1] if line)
    return {piece for piece in pieces if len(piece) >= 8}


def _short(urn: str) -> str:
    return urn.rsplit("::", 1)[-1] if urn else ""


def render(run: MockRun, out: Path) -> None:
    if out.exists():
        shutil.rmtree(out)
    secrets = _secret_strings(run)
    mock_values = set(getattr(run, "mock_values", ()))

    def write(path: Path, text: str) -> None:
        _write(path, mark_mock_values(text, mock_values))

    components = {r.urn for r in run.registrations if not r.custom}

    tree = []
    for registration in run.registrations:
        inputs = _redact(_redact_paths(registration.inputs, registration.secret_inputs), secrets)
        if "userData" in inputs:
            inputs["userData"] = f"see machines/{registration.name}/"
        if registration.type == "kubernetes:helm.sh/v3:Release":
            inputs["values"] = f"see helm/{registration.inputs.get('name')}.values.yaml"
        if registration.type.startswith("pulumi-python:dynamic/"):
            inputs.pop("__provider", None)  # the pickled provider code, not configuration
        tree.append(
            {
                "type": registration.type,
                "name": registration.name,
                "parent": _short(registration.parent) if registration.parent in components else "stack",
                "component": not registration.custom,
                **({"protect": True} if registration.protect else {}),
                **({"ignoreChanges": registration.ignore_changes} if registration.ignore_changes else {}),
                "inputs": inputs,
            }
        )
    write(out / "resources.yaml", _dump(tree))

    # Every machine (server instances, and the NGINX launch template) as cloud-init sees it.
    machines = [*run.of_type("aws:ec2/instance:Instance"), *run.of_type("aws:ec2/launchTemplate:LaunchTemplate")]
    for machine in machines:
        user_data = machine.inputs.get("userData")
        split = machine_files.split(user_data, shown_at="files") if isinstance(user_data, str) else None
        if split is None:
            continue
        folder = out / "machines" / machine.name
        write(folder / "user-data.yaml", _redact(machine_files.layout_yaml(split), secrets))
        for path, content in split.files.items():
            write(folder / "files" / path.lstrip("/"), _redact(content, secrets))

    # The NGINX load balancer boots from a launch template; its configuration is in SSM.
    for parameter in run.of_type("aws:ssm/parameter:Parameter"):
        if parameter.inputs.get("name", "").endswith("/nginx/nginx.conf"):
            write(out / "nginx" / "nginx.conf", parameter.inputs["value"])

    for release in run.of_type("kubernetes:helm.sh/v3:Release"):
        values = _redact(_redact_values(release), secrets)
        write(out / "helm" / f"{release.inputs['name']}.values.yaml", _dump(values))

    write(out / "summary.md", _summary(run))


def mark_mock_values(text: str, mock_values: set[str]) -> str:
    """Wrap every value the mocks invented in `«mock:…»`, in one pass (longest first), so a
    mock address inside a mock ARN is not marked twice."""
    if not mock_values:
        return text
    pattern = re.compile("|".join(re.escape(v) for v in sorted(mock_values, key=lambda v: (-len(v), v))))
    return pattern.sub(lambda match: MOCK_MARK.format(match.group(0)), text)


def _redact_values(release: Registration) -> dict:
    values = dict(release.inputs.get("values") or {})
    # The Rancher bootstrap password is generated; show that it is set, not what it is.
    if "bootstrapPassword" in values:
        values["bootstrapPassword"] = REDACTED
    return values


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _summary(run: MockRun) -> str:
    counts = Counter(r.type for r in run.resources)
    lines = ["# Offline render", ""]
    lines += ["Values marked `«mock:…»` were invented by the offline mocks (ids, addresses, endpoints, ARNs, "
              "the account): AWS assigns the real ones.", ""]
    lines += ["## Outputs", "", "| output | value |", "|---|---|"]
    for name in sorted(run.outputs):
        output = run.outputs[name]
        shown = REDACTED if output.secret else output.value
        lines.append(f"| {name} | {shown} |")
    lines += ["", "## What the internet can reach", ""]
    groups = {g.outputs.get("id"): g.name for g in run.of_type("aws:ec2/securityGroup:SecurityGroup")}
    exposed = sorted(
        f"- {groups.get(rule.inputs['securityGroupId'], '?')}: {rule.inputs['ipProtocol']} {rule.inputs['fromPort']}-{rule.inputs['toPort']} from {rule.inputs['cidrIpv4']}"
        for rule in run.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
        if rule.inputs.get("cidrIpv4") in WORLD
    )
    lines += exposed or ["- nothing"]
    for balancer in run.of_type("aws:lb/loadBalancer:LoadBalancer"):
        lines.append(f"- load balancer {balancer.name}: {'internal' if balancer.inputs.get('internal') else 'internet-facing'}")
    for instance in run.of_type("aws:ec2/instance:Instance"):
        if instance.inputs.get("associatePublicIpAddress"):
            lines.append(f"- instance {instance.name} has a public address")
    for eip in run.of_type("aws:ec2/eip:Eip"):
        lines.append(f"- Elastic IP {eip.name}")
    lines += ["", "## Restricted to adminCidrs", ""]
    admin = sorted(
        {
            f"- {groups.get(rule.inputs['securityGroupId'], '?')}: tcp {rule.inputs['fromPort']} from {rule.inputs['cidrIpv4']}"
            for rule in run.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
            if rule.inputs.get("cidrIpv4") and rule.inputs["cidrIpv4"] not in WORLD
        }
    )
    lines += admin or ["- nothing"]
    lines += ["", "## AWS quotas", "", "What this stack takes of its account's regional quotas, counted from the resources "
              "above (steady state; stacks in one account and region add up: README \"Quotas\").", ""]
    lines += quotas.summary_lines(quotas.stack_needs(run.registrations))
    lines += ["", "## Resources by type", "", "| type | count |", "|---|---|"]
    lines += [f"| {type_token} | {count} |" for type_token, count in sorted(counts.items())]
    lines += ["", f"{sum(counts.values())} resources in {len([r for r in run.registrations if not r.custom])} components.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.render", description="Render stacks offline.")
    parser.add_argument("stacks", nargs="*", help="stack names (stacks/Pulumi.<name>.yaml)")
    parser.add_argument("--all", action="store_true", help="render every stack in the stacks folder")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "render", help="output folder (one subfolder per stack)")
    parser.add_argument("--stacks-dir", type=Path, default=STACKS_DIR, help=argparse.SUPPRESS)
    parser.add_argument("--dump-state", type=Path, metavar="FILE", help="write the registrations as JSON (for tools.plan)")
    parser.add_argument("--plan", metavar="BASE_REF", help="print the offline plan from BASE_REF to the working tree")
    parser.add_argument("--diff", metavar="BASE_REF", help="write render diff.md/diff.patch from BASE_REF to the working tree")
    args = parser.parse_args(argv)
    stacks = sorted(p.name.split(".")[1] for p in args.stacks_dir.glob("Pulumi.*.yaml")) if args.all else args.stacks
    if not stacks:
        parser.error("name a stack, or --all")
    if args.dump_state:
        from tools.plan import dump_states

        errors = dump_states(stacks, args.dump_state, stacks_dir=args.stacks_dir)
        for stack, error in sorted(errors.items()):
            print(f"{stack}: {error}", file=sys.stderr)
        return 2 if errors else 0
    if args.diff:
        from tools.render_diff import render_diff

        text, diff_failed = render_diff(args.diff, stacks, args.out)
        print(text)
        return 2 if diff_failed else 0
    if args.plan:
        from tools.plan import plan_markdown

        text, plan_failed = plan_markdown(args.plan, stacks, stacks_dir=args.stacks_dir)
        _write(args.out / "plan.md", text)
        print(text)
        return 2 if plan_failed else 0
    failed = False
    for stack in stacks:
        try:
            run = run_stack(stack, stacks_dir=args.stacks_dir)
        except SettingsError as error:
            print(f"{stack}: {error}", file=sys.stderr)
            failed = True
            continue
        except FileNotFoundError:
            print(f"{stack}: no stack file {args.stacks_dir / f'Pulumi.{stack}.yaml'}", file=sys.stderr)
            failed = True
            continue
        render(run, args.out / stack)
        print(f"{stack}: rendered {len(run.resources)} resources to {args.out / stack}")
    return 2 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
