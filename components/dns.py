"""The names the stack owns: Rancher's hostname, the Kubernetes API name and (RKE2) the
servers' registration name.

All three are fixed strings, known before anything exists: they go into `tls-san`,
the kubeconfig, the readiness gate and joiners' `server:` without any server's user
data depending on a load balancer output. Replacing a load balancer only moves a
record, and every TLS name stays valid.

The registration name is a round-robin A record of the servers' private addresses in
a private hosted zone the stack creates (RKE2's HA guide lists round-robin DNS as a
fixed registration address). Joiners reach the servers directly on 9345: no
registration load balancer, no hairpin, nothing for a joiner to wait for but the
first server.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

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
class RancherDnsArgs:
    hostname: str
    api_hostname: str
    hosted_zone: str
    hosted_zone_private: bool
    vpc_id: pulumi.Input[str]
    # NLB: aliases to its DNS name and zone; NGINX: plain A records to its Elastic IP.
    alias_dns_name: Optional[pulumi.Input[str]] = None
    alias_zone_id: Optional[pulumi.Input[str]] = None
    address: Optional[pulumi.Input[str]] = None
    # RKE2: the servers' private addresses behind the registration name, in the stack's zone.
    registration_addresses: Sequence[pulumi.Input[str]] = ()
    private_zone_id: Optional[pulumi.Input[str]] = None


class RancherDns(pulumi.ComponentResource):
    fqdn: pulumi.Output[str]
    api_fqdn: pulumi.Output[str]
    records: list[aws.route53.Record]

    def __init__(self, name: str, args: RancherDnsArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("rancher-ha:dns:RancherDns", name, None, opts)
        zone = aws.route53.get_zone_output(
            name=args.hosted_zone,
            private_zone=args.hosted_zone_private,
            vpc_id=args.vpc_id if args.hosted_zone_private else None,
            opts=pulumi.InvokeOptions(parent=self),
        )

        def to_load_balancer(resource_name: str, record_name: str, previous: Optional[str] = None) -> aws.route53.Record:
            opts = child(self, aliases=[pulumi.Alias(name=previous)] if previous else None)
            if args.alias_dns_name is not None:
                return aws.route53.Record(
                    resource_name,
                    zone_id=zone.zone_id,
                    name=record_name,
                    type="A",
                    aliases=[
                        aws.route53.RecordAliasArgs(name=args.alias_dns_name, zone_id=args.alias_zone_id, evaluate_target_health=True)
                    ],
                    opts=opts,
                )
            return aws.route53.Record(
                resource_name, zone_id=zone.zone_id, name=record_name, type="A", ttl=60, records=[args.address], opts=opts
            )

        # The first release called the Rancher record after the component.
        rancher = to_load_balancer(f"{name}-rancher", args.hostname, previous=name)
        api = to_load_balancer(f"{name}-api", args.api_hostname)
        self.records = [rancher, api]

        if args.registration_addresses:
            self.records.append(
                aws.route53.Record(
                    f"{name}-registration",
                    zone_id=args.private_zone_id,
                    name=registration_hostname(),
                    type="A",
                    ttl=REGISTRATION_TTL,
                    records=list(args.registration_addresses),
                    opts=child(self),
                )
            )

        self.fqdn = rancher.fqdn
        self.api_fqdn = api.fqdn
        self.register_outputs({"fqdn": self.fqdn, "api_fqdn": self.api_fqdn})
