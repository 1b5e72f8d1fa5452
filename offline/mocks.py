"""Deterministic stand-ins for everything the cloud would assign.

The same mocks serve the unit tests and the offline render, so what reviewers read in
a rendered stack is exactly what the tests assert on. Values are derived from resource
names (hashes), never from counters or clocks, so two runs of a stack are identical
even though Pulumi registers resources concurrently.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import threading
from dataclasses import dataclass, field
from typing import Any, Optional

import pulumi
from pulumi.runtime.mocks import MockMonitor

ACCOUNT_ID = "123456789012"
AMI_ID = "ami-0123456789abcdef0"
HOSTED_ZONE_ID = "Z0123456789EXAMPLE"
NLB_ZONE_ID = "Z2IFOLAFXWLO4F"
EXISTING_VPC_CIDR = "10.20.0.0/16"


def digest(*parts: str, length: int = 12) -> str:
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:length]


def fake_pem(kind: str, name: str) -> str:
    body = base64.b64encode(hashlib.sha256(f"{kind}/{name}".encode()).digest() * 2).decode()
    return f"-----BEGIN {kind}-----\n{body}\n-----END {kind}-----\n"


SECRET_SIGNATURE_KEY = "4dabf18193072939515e22adb298388d"
SECRET_SIGNATURE = "1b47061264138c4ac30d75fd1eb44270"


def unwrap_secrets(value: Any, path: str = "", found: Optional[list[str]] = None) -> tuple[Any, list[str]]:
    """Replace secret envelopes by their values (and whole doubles by ints); return the secret paths."""
    found = [] if found is None else found
    if isinstance(value, dict):
        if value.get(SECRET_SIGNATURE_KEY) == SECRET_SIGNATURE:
            found.append(path or "<root>")
            inner, _ = unwrap_secrets(value.get("value"), path, [])
            return inner, found
        return {key: unwrap_secrets(item, f"{path}.{key}" if path else key, found)[0] for key, item in value.items()}, found
    if isinstance(value, list):
        return [unwrap_secrets(item, f"{path}[{index}]", found)[0] for index, item in enumerate(value)], found
    if isinstance(value, float) and value.is_integer():
        # The wire carries every number as a double; show 443, not 443.0.
        return int(value), found
    return value, found


@dataclass
class Registration:
    type: str
    name: str
    inputs: dict
    urn: str
    parent: str
    dependencies: list[str]
    provider: str
    custom: bool
    outputs: dict = field(default_factory=dict)
    # A multi-language component (e.g. kubernetes:yaml/v2:ConfigFile): its provider plugin
    # constructs its children, on the deployer's machine, so the mocks never see them.
    remote: bool = False
    # Input property paths the program marked secret.
    secret_inputs: list[str] = field(default_factory=list)
    ignore_changes: list[str] = field(default_factory=list)
    protect: bool = False
    # What the engine needs to plan an update or a destroy (see offline/plan.py).
    property_dependencies: dict[str, list[str]] = field(default_factory=dict)
    # The deleteBeforeReplace option: None when the program did not set it (the provider's
    # diff decides), True or False when it did (it overrides the provider either way).
    delete_before_replace: Optional[bool] = None
    replace_on_changes: list[str] = field(default_factory=list)
    aliases: list[str] = field(default_factory=list)  # old URNs this resource was known by
    deleted_with: str = ""
    replace_with: list[str] = field(default_factory=list)
    replacement_trigger: Any = None


class StackMocks(pulumi.runtime.Mocks):
    """Records every registration and answers with deterministic outputs."""

    def __init__(self, region: str, preview: bool, deployment: str = ""):
        self.region = region
        self.preview = preview
        # Another deployment of the same project and stack name (another team's fork, its
        # own state): random values differ, as they would on AWS. "" keeps the usual ones.
        self.deployment = deployment
        self.lock = threading.Lock()
        self.registrations: list[Registration] = []
        self.secret_values: set[str] = set()
        self._pending: dict[tuple[str, str], dict] = {}
        self._interface_ips: dict[str, str] = {}
        # Every value the mocks invented (ids, addresses, endpoints, ARNs): the render marks
        # them, so no reviewer takes a mock address for a real one.
        self.invented: set[str] = set()
        # VPCs this run creates: no hosted zone can be associated with them yet.
        self._created_vpcs: set[str] = set()

    # -- resources ----------------------------------------------------------------
    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[Optional[str], dict]:
        inputs = dict(args.inputs)
        computed = {} if self.preview else self._computed(args.typ, args.name, inputs)
        self._remember(computed, inputs)
        state = {**inputs, **computed}
        for key in ("result", "privateKeyPem", "privateKeyOpenssh", "privateKeyPemPkcs8"):
            if isinstance(computed.get(key), str):
                with self.lock:
                    self.secret_values.add(computed[key])
        resource_id = None if self.preview else computed.get("id", f"{args.name}-{digest(args.typ, args.name, length=8)}")
        if resource_id is not None:
            state["id"] = resource_id
        with self.lock:
            self._pending[(args.typ, args.name)] = state
        return resource_id, state

    def _remember(self, invented: Any, given: Any = None) -> None:
        """Record the strings in `invented` that the program did not give the mocks itself."""
        given_strings = set(_strings(given))
        with self.lock:
            self.invented.update(value for value in _strings(invented) if len(value) >= 8 and value not in given_strings)

    def _computed(self, typ: str, name: str, inputs: dict) -> dict:
        h = digest(typ, name)
        arn = f"arn:{_partition(self.region)}:{typ.split(':')[1].split('/')[0]}:{self.region}:{ACCOUNT_ID}:{name}"
        out: dict[str, Any] = {"arn": arn}
        if typ in ("aws:ec2/instance:Instance", "aws:ec2/networkInterface:NetworkInterface"):
            index = int(h[:4], 16)
            private_ip = f"10.0.{index % 200 + 1}.{index // 200 % 250 + 4}"
            # An instance on a pre-created interface has that interface's address, as on AWS.
            for interface in inputs.get("networkInterfaces") or []:
                with self.lock:
                    private_ip = self._interface_ips.get(interface.get("networkInterfaceId"), private_ip)
            if typ == "aws:ec2/networkInterface:NetworkInterface":
                out.update(id=f"eni-{h[:17]}", privateIp=private_ip)
                with self.lock:
                    self._interface_ips[out["id"]] = private_ip
            else:
                out.update(id=f"i-{h[:17]}", privateIp=private_ip, publicIp="")
        elif typ == "aws:ec2/eip:Eip":
            out.update(id=f"eipalloc-{h}", allocationId=f"eipalloc-{h}", publicIp=f"203.0.113.{int(h[:2], 16) % 250 + 1}")
        elif typ == "aws:lb/loadBalancer:LoadBalancer":
            out.update(dnsName=f"{name}-{h[:10]}.elb.{self.region}.amazonaws.com", zoneId=NLB_ZONE_ID)
        elif typ == "aws:rds/instance:Instance":
            address = f"{name}.{h}.{self.region}.rds.amazonaws.com"
            out.update(address=address, port=inputs.get("port", 3306), endpoint=f"{address}:3306")
        elif typ == "aws:ec2/vpc:Vpc":
            out.update(id=f"vpc-{h[:17]}")
            with self.lock:
                self._created_vpcs.add(out["id"])
        elif typ == "aws:ec2/subnet:Subnet":
            out.update(id=f"subnet-{h[:17]}")
        elif typ == "aws:ec2/securityGroup:SecurityGroup":
            out.update(id=f"sg-{h[:17]}")
        elif typ in ("aws:iam/role:Role", "aws:iam/instanceProfile:InstanceProfile"):
            out.update(name=f"{name}-{h[:7]}", arn=f"arn:aws:iam::{ACCOUNT_ID}:{'role' if 'role' in typ else 'instance-profile'}/{name}")
        elif typ in ("aws:rds/subnetGroup:SubnetGroup", "aws:rds/parameterGroup:ParameterGroup"):
            out.update(name=f"{name}-{h[:7]}")
        elif typ == "aws:s3/bucket:Bucket":
            bucket = f"{inputs.get('bucketPrefix', name)}{h[:8]}"
            out.update(id=bucket, bucket=bucket, arn=f"arn:aws:s3:::{bucket}")
        elif typ == "aws:kms/key:Key":
            key_id = f"{h[:8]}-{h[8:12]}-4000-8000-{digest(typ, name, 'key')}"
            out.update(id=key_id, keyId=key_id, arn=f"arn:{_partition(self.region)}:kms:{self.region}:{ACCOUNT_ID}:key/{key_id}")
        elif typ == "aws:ec2/launchTemplate:LaunchTemplate":
            out.update(id=f"lt-{h[:17]}", latestVersion=1)
        elif typ == "aws:route53/zone:Zone":
            # As the AWS provider reports them: from the zone's NS record, with the final dot.
            out.update(id=f"Z{h.upper()}", zoneId=f"Z{h.upper()}", nameServers=["ns-1536.awsdns-00.co.uk."],
                       primaryNameServer="ns-1536.awsdns-00.co.uk.")
        elif typ == "aws:route53/record:Record":
            out.update(fqdn=inputs.get("name"))
        elif typ == "random:index/randomPassword:RandomPassword":
            length = int(inputs.get("length", 16))
            out.update(result=(h * 8)[:length])
        elif typ == "random:index/randomId:RandomId":
            length = int(inputs.get("byteLength", 8))
            h = digest(self.deployment, typ, name) if self.deployment else h
            out.update(hex=h[: 2 * length], b64Url=h[: 2 * length], dec=str(int(h[: 2 * length], 16)))
        elif typ == "random:index/randomBytes:RandomBytes":
            length = int(inputs.get("length", 32))
            raw = bytes.fromhex((h * 8)[: 2 * length])
            out.update(base64=base64.b64encode(raw).decode(), hex=raw.hex())
        elif typ == "aws:iam/user:User":
            out.update(id=name, name=name, arn=f"arn:aws:iam::{ACCOUNT_ID}:user{inputs.get('path', '/')}{name}")
        elif typ == "aws:iam/accessKey:AccessKey":
            out.update(id=f"AKIA{h[:16].upper()}", secret=f"mock-secret-{h}")
        elif typ == "tls:index/privateKey:PrivateKey":
            kind = "RSA PRIVATE KEY" if inputs.get("algorithm") == "RSA" else "EC PRIVATE KEY"
            out.update(privateKeyPem=fake_pem(kind, name), publicKeyPem=fake_pem("PUBLIC KEY", name))
        elif typ in ("tls:index/selfSignedCert:SelfSignedCert", "tls:index/locallySignedCert:LocallySignedCert"):
            out.update(certPem=fake_pem("CERTIFICATE", name))
        elif typ == "tls:index/certRequest:CertRequest":
            out.update(certRequestPem=fake_pem("CERTIFICATE REQUEST", name))
        elif typ == "aws:lb/targetGroup:TargetGroup":
            out.update(arn=f"arn:aws:elasticloadbalancing:{self.region}:{ACCOUNT_ID}:targetgroup/{name}/{h}")
        elif typ == "kubernetes:helm.sh/v3:Release":
            out.update(status={"status": "deployed", "name": inputs.get("name"), "namespace": inputs.get("namespace")})
        return out

    # -- invokes ------------------------------------------------------------------
    # Invokes whose answers are what AWS would say for the region itself, not invented data.
    REAL_ANSWERS = ("aws:index/getAvailabilityZones:getAvailabilityZones", "aws:index/getRegion:getRegion",
                    "aws:index/getPartition:getPartition")

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict, Optional[list]]:
        answer, failures = self._answer(args)
        if args.token not in self.REAL_ANSWERS:
            self._remember(answer, args.args)
        return answer, failures

    def _answer(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict, Optional[list]]:
        token, inputs = args.token, args.args
        if token == "aws:index/getAvailabilityZones:getAvailabilityZones":
            names = [f"{self.region}{letter}" for letter in "abc"]
            return {"names": names, "zoneIds": [f"z-{name}" for name in names], "id": self.region}, []
        if token == "aws:ec2/getAmi:getAmi":
            return {"id": AMI_ID, "imageId": AMI_ID, "name": "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-20261101"}, []
        if token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {"accountId": ACCOUNT_ID, "arn": f"arn:aws:iam::{ACCOUNT_ID}:user/offline", "id": ACCOUNT_ID, "userId": "offline"}, []
        if token == "aws:route53/getZone:getZone":
            # As AWS answers: `vpcId` filters to private zones already associated with that
            # VPC (pulumi_aws route53/get_zone.py), which a VPC created in the same run is
            # not. An existing VPC is taken to be associated, as the settings require.
            with self.lock:
                created = inputs.get("vpcId") in self._created_vpcs
            if created:
                raise Exception(f"no matching Route 53 Hosted Zone found (name {inputs.get('name')}, vpc_id {inputs.get('vpcId')})")
            return {"zoneId": HOSTED_ZONE_ID, "id": HOSTED_ZONE_ID, "name": inputs.get("name")}, []
        if token == "aws:ec2/getVpc:getVpc":
            return {"id": inputs.get("id"), "cidrBlock": EXISTING_VPC_CIDR, "enableDnsSupport": True, "enableDnsHostnames": True}, []
        if token == "aws:index/getPartition:getPartition":
            return {"partition": _partition(self.region), "dnsSuffix": "amazonaws.com", "id": _partition(self.region)}, []
        if token == "aws:ec2/getSubnet:getSubnet":
            # Existing subnets: spread over the zones by their id, deterministically.
            subnet = inputs.get("id", "")
            zone = f"{self.region}{'abc'[int(subnet[-1], 16) % 3] if subnet else 'a'}"
            third = int(subnet[-2:], 16) if subnet else 0
            return {"id": subnet, "availabilityZone": zone, "vpcId": "vpc-existing", "cidrBlock": f"10.20.{third}.0/24"}, []
        if token == "aws:index/getRegion:getRegion":
            return {"name": self.region, "id": self.region}, []
        raise NotImplementedError(f"offline mocks do not answer {token}")


class RecordingMonitor(MockMonitor):
    """A mock monitor that also records parents and dependencies of each registration."""

    def __init__(self, mocks: StackMocks):
        super().__init__(mocks)
        self.stack_mocks = mocks

    def RegisterResource(self, request):
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            with self.stack_mocks.lock:
                state = self.stack_mocks._pending.pop((request.type, request.name), {})
                inputs, secret_paths = unwrap_secrets(
                    pulumi.runtime.rpc.deserialize_properties(request.object, keep_unknowns=True)
                )
                self.stack_mocks.registrations.append(
                    Registration(
                        type=request.type,
                        name=request.name,
                        inputs=inputs,
                        urn=response.urn,
                        parent=request.parent,
                        dependencies=list(request.dependencies),
                        provider=request.provider,
                        custom=request.custom,
                        outputs=state,
                        remote=bool(request.remote),
                        secret_inputs=secret_paths,
                        ignore_changes=list(request.ignoreChanges),
                        protect=bool(request.protect),
                        property_dependencies={
                            key: list(value.urns) for key, value in request.propertyDependencies.items()
                        },
                        delete_before_replace=(
                            bool(request.deleteBeforeReplace)
                            if request.deleteBeforeReplaceDefined or request.deleteBeforeReplace
                            else None
                        ),
                        replace_on_changes=list(request.replaceOnChanges),
                        aliases=_alias_urns(request, pulumi.get_stack(), pulumi.get_project()),
                        deleted_with=request.deletedWith,
                        replace_with=list(request.replace_with),
                        replacement_trigger=_trigger(request),
                    )
                )
        return response


def _alias_urns(request, stack: str, project: str) -> list[str]:
    """Old URNs this registration answers to, spelled the way MockMonitor spells URNs
    (type chain of the immediate parent's type only)."""
    urns = list(request.aliasURNs)
    for alias in request.aliases:
        if alias.urn:
            urns.append(alias.urn)
            continue
        spec = alias.spec
        parent = "" if spec.noParent else (spec.parentUrn or request.parent)
        kind = spec.type or request.type
        chain = f"{parent.split('::')[2].split('$')[-1]}${kind}" if parent else kind
        urns.append(f"urn:pulumi:{spec.stack or stack}::{spec.project or project}::{chain}::{spec.name or request.name}")
    return urns


def _trigger(request) -> Any:
    if not request.HasField("replacement_trigger"):
        return None
    value = pulumi.runtime.rpc.deserialize_property(
        json_format_value(request.replacement_trigger), keep_unknowns=True
    )
    return unwrap_secrets(value)[0]


def json_format_value(value):
    """A protobuf Value as the Python structure deserialize_property expects."""
    from google.protobuf import json_format

    return json_format.MessageToDict(value)


def _partition(region: str) -> str:
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    if region.startswith("cn-"):
        return "aws-cn"
    return "aws"


def _strings(value: Any):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _strings(item)


def ip_in(cidr: str, address: str) -> bool:
    return ipaddress.ip_address(address) in ipaddress.ip_network(cidr)
