"""The Route53 record that points Rancher's hostname at the load balancer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pulumi
import pulumi_aws as aws

from .naming import child


@dataclass
class RancherDnsArgs:
    hostname: str
    hosted_zone: str
    # NLB: an alias to its DNS name and zone; NGINX: a plain A record to its Elastic IP.
    alias_dns_name: Optional[pulumi.Input[str]] = None
    alias_zone_id: Optional[pulumi.Input[str]] = None
    address: Optional[pulumi.Input[str]] = None


class RancherDns(pulumi.ComponentResource):
    fqdn: pulumi.Output[str]

    def __init__(self, name: str, args: RancherDnsArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("rancher-ha:dns:RancherDns", name, None, opts)
        zone = aws.route53.get_zone_output(name=args.hosted_zone, private_zone=False, opts=pulumi.InvokeOptions(parent=self))
        if args.alias_dns_name is not None:
            record = aws.route53.Record(
                name,
                zone_id=zone.zone_id,
                name=args.hostname,
                type="A",
                aliases=[
                    aws.route53.RecordAliasArgs(
                        name=args.alias_dns_name, zone_id=args.alias_zone_id, evaluate_target_health=True
                    )
                ],
                opts=child(self),
            )
        else:
            record = aws.route53.Record(
                name,
                zone_id=zone.zone_id,
                name=args.hostname,
                type="A",
                ttl=60,
                records=[args.address],
                opts=child(self),
            )
        self.fqdn = record.fqdn
        self.register_outputs({"fqdn": self.fqdn})
