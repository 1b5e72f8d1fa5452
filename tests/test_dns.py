"""Route53: the hostname points at the load balancer."""

from conftest import NGINX_L4, cached_run
from offline.mocks import HOSTED_ZONE_ID, NLB_ZONE_ID


def test_alias_to_the_nlb(dev_run):
    (record,) = dev_run.of_type("aws:route53/record:Record")
    assert record.inputs["name"] == "rancher.dev.example.com" and record.inputs["type"] == "A"
    assert record.inputs["zoneId"] == HOSTED_ZONE_ID
    (alias,) = record.inputs["aliases"]
    (balancer,) = dev_run.of_type("aws:lb/loadBalancer:LoadBalancer")
    assert alias == {"name": balancer.outputs["dnsName"], "zoneId": NLB_ZONE_ID, "evaluateTargetHealth": True}


def test_a_record_to_the_nginx_elastic_ip():
    run = cached_run(NGINX_L4)
    (record,) = run.of_type("aws:route53/record:Record")
    eip = next(e for e in run.of_type("aws:ec2/eip:Eip") if e.name == "nginx-lb-address")
    assert record.inputs["records"] == [eip.outputs["publicIp"]]
    assert "aliases" not in record.inputs or not record.inputs["aliases"]
