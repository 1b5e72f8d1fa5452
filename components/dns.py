"""The names the stack owns: Rancher's hostname, the Kubernetes API name and (RKE2) the
servers' registration name.

All three are fixed strings, known before anything exists: they go into `tls-san`,
the kubeconfig, the readiness gate and joiners' `server:` without any server's user
data depending on a load balancer output. Replacing a load balancer only moves
records, and every TLS name stays valid. The API and registration records (ApiDns)
come before the readiness gate; the Rancher record (RancherDns), the one users follow,
after it when it points at an NLB.

The registration name is a round-robin A record of the servers' private addresses in
a private hosted zone the stack creates (RKE2's HA guide lists round-robin DNS as a
fixed registration address). Joiners reach the servers directly on 9345: no
registration load balancer, no hairpin, nothing for a joiner to wait for but the
first server.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, TypedDict

import pulumi
import pulumi_aws as aws

from .naming import child, stack_label, tags

REGISTRATION_TTL = 30  # seconds: a replaced server's address is picked up quickly


def private_zone_name() -> str:
    """The stack's own private zone, e.g. rancher-ha-dev.internal ('.internal' is in NO_PROXY)."""
    return f"rancher-ha-{stack_label()}.internal"


def registration_hostname() -> str:
    return f"registration.{private_zone_name()}"


# Negative answers (NXDOMAIN, "no such record yet") are cached for the SOA's minimum
# TTL, 86400 s by default in Route53 (capped by the SOA record's own TTL, 900 s). A joiner
# asking before the registration record exists would then wait up to 15 minutes.
NEGATIVE_CACHE_SECONDS = 10


@dataclass
class PrivateZoneArgs:
    vpc_id: pulumi.Input[str]


class PrivateZone(pulumi.ComponentResource):
    """The stack's own private zone, created before the servers (it needs only the VPC),
    with a short negative-caching TTL, so a name asked for too early is asked again soon."""

    zone_id: pulumi.Output[str]

    def __init__(self, name: str, args: PrivateZoneArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("rancher-ha:dns:PrivateZone", name, None, opts)
        zone = aws.route53.Zone(
            name,
            name=private_zone_name(),
            comment="rancher-ha: names only the stack's own machines resolve",
            vpcs=[aws.route53.ZoneVpcArgs(vpc_id=args.vpc_id)],
            # The zone holds only records this stack manages.
            force_destroy=True,
            tags=tags("private-zone"),
            opts=child(self),
        )
        aws.route53.Record(
            f"{name}-soa",
            zone_id=zone.zone_id,
            name=private_zone_name(),
            type="SOA",
            ttl=60,
            records=[
                # The provider reads this from the zone's NS values, which end in a dot.
                zone.primary_name_server.apply(
                    lambda server: f"{server.rstrip('.')}. awsdns-hostmaster.amazon.com. 1 7200 900 1209600 {NEGATIVE_CACHE_SECONDS}"
                )
            ],
            # Every zone is born with an SOA record: this one takes it over.
            allow_overwrite=True,
            opts=child(self),
        )
        self.zone_id = zone.zone_id
        self.register_outputs({"zone_id": self.zone_id})


@dataclass
class LoadBalancerTarget:
    """Where a public name points: an NLB (alias to its DNS name and zone) or NGINX's
    Elastic IP (a plain A record)."""

    alias_dns_name: Optional[pulumi.Input[str]] = None
    alias_zone_id: Optional[pulumi.Input[str]] = None
    address: Optional[pulumi.Input[str]] = None

    def __post_init__(self) -> None:
        alias = (self.alias_dns_name, self.alias_zone_id)
        if (self.address is None and None in alias) or (self.address is not None and alias != (None, None)):
            raise ValueError("LoadBalancerTarget: give alias_dns_name and alias_zone_id, or address alone")


def _hosted_zone(parent: pulumi.Resource, args: "PublicNameArgs"):
    """The hosted zone of the public names. A private zone in an existing VPC is looked up
    by that VPC, which fails unless the zone is associated with it (the user's VPC, the
    user's association). A VPC the stack creates cannot be associated before this `up`
    (`vpc_id` filters to zones already associated): the zone is found by name, and
    ApiDns associates the new VPC with it."""
    by_vpc = args.hosted_zone_private and not args.created_vpc
    return aws.route53.get_zone_output(
        name=args.hosted_zone, private_zone=args.hosted_zone_private, vpc_id=args.vpc_id if by_vpc else None,
        opts=pulumi.InvokeOptions(parent=parent),
    )


class _Overwrite(TypedDict, total=False):
    allow_overwrite: bool


def _load_balancer_record(resource_name: str, zone_id: pulumi.Input[str], record_name: str, target: LoadBalancerTarget,
                          opts: pulumi.ResourceOptions, take_over: bool = False) -> aws.route53.Record:
    # Only an explicit take-over may overwrite a record someone else (an old stack) made;
    # otherwise Route53 refuses and `pulumi up` fails instead of moving a live name.
    overwrite: _Overwrite = {"allow_overwrite": True} if take_over else {}
    if target.address is None:
        assert target.alias_dns_name is not None and target.alias_zone_id is not None  # checked in __post_init__
        return aws.route53.Record(
            resource_name,
            zone_id=zone_id,
            name=record_name,
            type="A",
            aliases=[aws.route53.RecordAliasArgs(name=target.alias_dns_name, zone_id=target.alias_zone_id, evaluate_target_health=True)],
            opts=opts,
            **overwrite,
        )
    return aws.route53.Record(
        resource_name, zone_id=zone_id, name=record_name, type="A", ttl=60, records=[target.address], opts=opts, **overwrite
    )


# The API and registration records were children of RancherDns until the Rancher record
# had to wait for the readiness gate; these aliases keep their URNs' history.
_FORMER_PARENT = ("rancher-dns", "rancher-ha:dns:RancherDns")


def _former_parent_alias() -> pulumi.Alias:
    return pulumi.Alias(parent=pulumi.create_urn(*_FORMER_PARENT))


@dataclass
class PublicNameArgs:
    """Where the stack's public names live and what they point at."""

    hosted_zone: str
    hosted_zone_private: bool
    vpc_id: pulumi.Input[str]
    target: LoadBalancerTarget
    # The stack creates the VPC: a private zone is found by name, and ApiDns associates
    # the new VPC with it.
    created_vpc: bool = False
    # What the records wait for besides their own inputs (the association).
    zone_ready: Sequence[pulumi.Resource] = ()
    # takeOverDnsRecords: overwrite the records of another stack (a restore moving Rancher).
    take_over: bool = False


class PublicNames(TypedDict):
    """PublicNameArgs' fields, to give ApiDnsArgs and RancherDnsArgs the same ones as **names."""

    hosted_zone: str
    hosted_zone_private: bool
    vpc_id: pulumi.Input[str]
    target: LoadBalancerTarget
    created_vpc: bool
    take_over: bool


@dataclass(kw_only=True)
class ApiDnsArgs(PublicNameArgs):
    api_hostname: str
    # RKE2: the servers' private addresses behind the registration name, in the stack's zone.
    registration_addresses: Sequence[pulumi.Input[str]] = ()
    private_zone_id: Optional[pulumi.Input[str]] = None


class ApiDns(pulumi.ComponentResource):
    """The names the cluster and this program need: the API name (the kubeconfig's server)
    and, for RKE2, the registration name. The readiness gate waits for them."""

    api_fqdn: pulumi.Output[str]
    records: list[aws.route53.Record]
    # What every record in the hosted zone must wait for: the zone's association with
    # a VPC the stack creates (none otherwise).
    zone_ready: list[pulumi.Resource]

    def __init__(self, name: str, args: ApiDnsArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("rancher-ha:dns:ApiDns", name, None, opts)
        zone = _hosted_zone(self, args)
        self.zone_ready = list(args.zone_ready)
        if args.hosted_zone_private and args.created_vpc:
            # Deleted after the records that depend on it, before the VPC it names. AWS
            # refuses to remove a private zone's last VPC (LastVPCAssociation): the zone
            # must keep another VPC, such as the one it was created with.
            self.zone_ready.append(
                aws.route53.ZoneAssociation(
                    f"{name}-hosted-zone-association", zone_id=zone.zone_id, vpc_id=args.vpc_id, opts=child(self)
                )
            )
        api = _load_balancer_record(
            "rancher-dns-api", zone.zone_id, args.api_hostname, args.target,
            child(self, aliases=[_former_parent_alias()], depends_on=self.zone_ready),
            take_over=args.take_over,
        )
        self.records = [api]
        if args.registration_addresses:
            self.records.append(
                aws.route53.Record(
                    "rancher-dns-registration",
                    zone_id=args.private_zone_id,
                    name=registration_hostname(),
                    type="A",
                    ttl=REGISTRATION_TTL,
                    records=list(args.registration_addresses),
                    opts=child(self, aliases=[_former_parent_alias()]),
                )
            )
        self.api_fqdn = api.fqdn
        self.register_outputs({"api_fqdn": self.api_fqdn})


@dataclass(kw_only=True)
class RancherDnsArgs(PublicNameArgs):
    hostname: str
    # What must be true before users are sent to the load balancer. A new NLB serves
    # nothing until its new target groups have registered and checked their targets
    # ("a few minutes", AWS): the record moves once the gate has seen the API through it.
    after: Sequence[pulumi.Resource] = ()


class RancherDns(pulumi.ComponentResource):
    """The name users open: Rancher's hostname."""

    fqdn: pulumi.Output[str]
    records: list[aws.route53.Record]

    def __init__(self, name: str, args: RancherDnsArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("rancher-ha:dns:RancherDns", name, None, opts)
        zone = _hosted_zone(self, args)
        # The first release called the Rancher record after the component.
        rancher = _load_balancer_record(
            f"{name}-rancher", zone.zone_id, args.hostname, args.target,
            child(self, aliases=[pulumi.Alias(name=name)], depends_on=[*args.after, *args.zone_ready]),
            take_over=args.take_over,
        )
        self.records = [rancher]
        self.fqdn = rancher.fqdn
        self.register_outputs({"fqdn": self.fqdn})
