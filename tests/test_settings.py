"""The settings model: defaults, derived values, and the bad-input catalogue.

Every invalid case runs the whole program under mocks and asserts (a) the error names
the key, the value and a fix, and (b) not a single resource was registered.
"""

import re
import pytest

from settings import SettingsError, settings_from_values
from settings import versions
from conftest import BASE_CONFIG, run, with_prod_bucket_admins

PEM_CERT = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
PEM_KEY = "-----BEGIN EC PRIVATE KEY-----\nMHc\n-----END EC PRIVATE KEY-----\n"

# (id, overrides, the key the message must name, a fragment of the explanation)
INVALID = [
    ("rke1", {"distribution": "rke"}, "distribution", "RKE1 reached end of life on 2025-07-31"),
    ("unknown-distribution", {"distribution": "eks"}, "distribution", "installs K3s or RKE2 on EC2 instances"),
    ("k3s-one-server", {"serverCount": 1}, "serverCount", "at least 2 servers"),
    ("k3s-too-many", {"serverCount": 9}, "serverCount", "at least 2 servers"),
    ("rke2-two", {"distribution": "rke2", "serverCount": 2}, "serverCount", "quorum"),
    ("rke2-four", {"distribution": "rke2", "serverCount": 4}, "serverCount", "quorum"),
    ("rke2-six", {"distribution": "rke2", "serverCount": 6}, "serverCount", "quorum"),
    ("rke2-one", {"distribution": "rke2", "serverCount": 1}, "serverCount", "quorum"),
    ("server-count-text", {"serverCount": "three"}, "serverCount", "is not a whole number. Fix: write an integer: k3s: 2-7; rke2: 3, 5 or 7"),
    ("k8s-too-old", {"kubernetesVersion": "v1.31.4+k3s1"}, "kubernetesVersion", "outside Rancher 2.14.4's supported range 1.33-1.35"),
    ("k8s-too-new", {"rancherVersion": "2.12.12", "kubernetesVersion": "v1.34.1+k3s1"}, "kubernetesVersion", "supported range 1.31-1.33"),
    ("k8s-wrong-flavour", {"kubernetesVersion": "v1.34.1+rke2r1"}, "kubernetesVersion", "is a rke2 release but distribution is k3s"),
    ("k8s-malformed", {"kubernetesVersion": "1.34"}, "kubernetesVersion", "not a K3s or RKE2 release"),
    ("rancher-unsupported", {"rancherVersion": "2.9.3"}, "rancherVersion", "not a supported minor"),
    ("rancher-with-v", {"rancherVersion": "v2.14.4"}, "rancherVersion", "without a 'v'"),
    ("cert-manager-old", {"certManagerVersion": "v1.14.5"}, "certManagerVersion", "older than v1.15"),
    ("hostname-outside-zone", {"hostname": "rancher.example.org"}, "hostname", "not inside the hosted zone 'example.com'"),
    ("hostname-malformed", {"hostname": "rancher_ha.example.com"}, "hostname", "not a fully qualified DNS name"),
    ("zone-malformed", {"hostedZone": "com"}, "hostedZone", "not a fully qualified DNS name"),
    ("vpc-cidr-malformed", {"vpcCidr": "10.0.0.0/33"}, "vpcCidr", "not a CIDR block"),
    ("vpc-cidr-host-bits", {"vpcCidr": "10.0.0.1/16"}, "vpcCidr", "has host bits set"),
    ("vpc-cidr-too-small", {"vpcCidr": "10.0.0.0/26"}, "vpcCidr", "/16 to /22"),
    ("admin-cidr-malformed", {"adminCidrs": ["203.0.113.0/24", "bogus"]}, "adminCidrs", "not a CIDR block"),
    ("admin-cidr-empty", {"adminCidrs": []}, "adminCidrs", "is empty"),
    ("admin-cidr-world", {"adminCidrs": ["0.0.0.0/0"]}, "adminCidrs", "allowApiFromAnywhere"),
    ("admin-cidr-not-list", {"adminCidrs": "203.0.113.0/24"}, "adminCidrs", "must be a list"),
    ("instance-type-malformed", {"serverInstanceType": "large"}, "serverInstanceType", "not an EC2 instance type"),
    ("instance-type-too-small", {"serverInstanceType": "t3.small"}, "serverInstanceType", "Rancher needs at least 4 GiB"),
    ("instance-type-c-medium", {"serverInstanceType": "c7g.medium"}, "serverInstanceType", "has 2 GiB"),
    ("nginx-type-malformed", {"nginxInstanceType": "nginx"}, "nginxInstanceType", "not an EC2 instance type"),
    ("instance-type-size-unknown", {"serverInstanceType": "t3.24xlarge"}, "serverInstanceType", "t3 comes in nano, micro, small, medium, large, xlarge, 2xlarge"),
    ("instance-type-family-unknown", {"serverInstanceType": "q9z.large"}, "serverInstanceType", "is not in the EC2 API's list of instance types"),
    ("nginx-type-size-unknown", {"nginxInstanceType": "c7g.5xlarge"}, "nginxInstanceType", "c7g comes in"),
    ("l7-on-nlb", {"loadBalancerLayer": "l7"}, "loadBalancerLayer", "NLB is layer 4 only"),
    ("lb-type-alb", {"loadBalancerType": "alb"}, "loadBalancerType", "an ALB speaks HTTP(S) only and cannot carry the Kubernetes API (6443)"),
    ("l7-rancher-tls", {"loadBalancerType": "nginx", "loadBalancerLayer": "l7", "tlsSource": "rancher"}, "tlsSource", "cannot issue Rancher's certificate"),
    ("provided-without-cert", {"tlsSource": "provided"}, "tlsSource", "needs tlsCertificate and tlsPrivateKey"),
    ("l7-provided-without-key", {"loadBalancerType": "nginx", "loadBalancerLayer": "l7", "tlsSource": "provided", "tlsCertificate": PEM_CERT}, "tlsSource", "needs tlsCertificate and tlsPrivateKey"),
    ("cert-not-pem", {"tlsSource": "provided", "tlsCertificate": "hello", "tlsPrivateKey": PEM_KEY}, "tlsCertificate", "not a PEM certificate"),
    ("key-not-pem", {"tlsSource": "provided", "tlsCertificate": PEM_CERT, "tlsPrivateKey": "hello"}, "tlsPrivateKey", "not a PEM private key"),
    ("cert-without-provided", {"tlsCertificate": PEM_CERT}, "tlsSource", "would be ignored"),
    ("letsencrypt-no-email", {"tlsSource": "letsEncrypt"}, "letsEncryptEmail", "is required with tlsSource: letsEncrypt"),
    ("letsencrypt-bad-email", {"tlsSource": "letsEncrypt", "letsEncryptEmail": "ops"}, "letsEncryptEmail", "not an e-mail address"),
    ("unknown-key", {"serverCont": 3}, "serverCont", "Did you mean 'serverCount'?"),
    ("unknown-key-hostname", {"hostName": "x.example.com"}, "hostName", "Did you mean 'hostname'?"),
    ("unknown-key-no-match", {"flux": True}, "flux", "See the settings table"),
    ("environment-unknown", {"environment": "qa"}, "environment", "is not an environment class: it selects the safety defaults"),
    ("db-engine-80", {"dbEngineVersion": "8.0"}, "dbEngineVersion", "8.0 entered it on 2026-08-01"),
    ("db-class-malformed", {"dbInstanceClass": "t4g.medium"}, "dbInstanceClass", "not an RDS instance class"),
    ("db-storage-small", {"dbAllocatedStorageGb": 5}, "dbAllocatedStorageGb", "must be 20-65536"),
    ("db-backups-off", {"dbBackupRetentionDays": 0}, "dbBackupRetentionDays", "turn automated backups off"),
    ("aws-account-malformed", {"awsAccount": "Prod Account"}, "awsAccount", "not an account label"),
    ("db-apply-immediately-not-bool", {"dbApplyImmediately": "sometimes"}, "dbApplyImmediately", "is not a boolean. Fix: write true or false"),
    ("root-volume-small", {"serverRootVolumeGb": 8}, "serverRootVolumeGb", "at least 30"),
    ("hop-limit-zero", {"imdsHopLimit": 0}, "imdsHopLimit", "must be 1-64"),
    ("vpc-id-malformed", {"vpcId": "my-vpc", "nodeSubnetIds": ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"], "lbSubnetIds": ["subnet-0123456789abcdef2", "subnet-0123456789abcdef3"]}, "vpcId", "not a VPC id"),
    ("subnets-without-vpc", {"nodeSubnetIds": ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"]}, "nodeSubnetIds", "without vpcId"),
    ("existing-vpc-one-subnet", {"vpcId": "vpc-0123456789abcdef0", "nodeSubnetIds": ["subnet-0123456789abcdef0"], "lbSubnetIds": ["subnet-0123456789abcdef2", "subnet-0123456789abcdef3"]}, "nodeSubnetIds", "at least 2 subnets"),
    ("subnet-id-malformed", {"vpcId": "vpc-0123456789abcdef0", "nodeSubnetIds": ["private-a", "private-b"], "lbSubnetIds": ["subnet-0123456789abcdef2", "subnet-0123456789abcdef3"]}, "nodeSubnetIds", "not a subnet id"),
    ("pod-cidr-overlaps-vpc", {"clusterCidr": "10.0.128.0/17"}, "clusterCidr", "overlaps the VPC"),
    ("service-overlaps-pods", {"serviceCidr": "10.42.0.0/16"}, "serviceCidr", "overlaps clusterCidr"),
    ("no-proxy-without-proxy", {"proxyNoProxy": ["corp.example"]}, "proxyNoProxy", "no proxy URL"),
    ("proxy-url-malformed", {"proxyHttps": "proxy:3128"}, "proxyHttps", "not a proxy URL"),
    ("proxy-url-credentials", {"proxyHttps": "http://user:pw@proxy:3128"}, "proxyHttps", "credentials are not supported"),
    ("no-proxy-with-comma", {"proxyHttps": "http://proxy:3128", "proxyNoProxy": ["a,b"]}, "proxyNoProxy", "one host, domain or CIDR per list item"),
    ("private-no-egress", {"natGateway": False}, "natGateway", "has no other way out than its NAT gateway"),
    ("created-vpc-proxy-no-nat", {"natGateway": False, "proxyHttps": "http://proxy.example.com:3128"}, "natGateway", "use an existing VPC where your proxy is reachable"),
    ("nat-per-zone-public", {"nodePlacement": "public", "natGatewayPerZone": True}, "natGatewayPerZone", "applies only to a VPC this stack creates"),
    ("nat-per-zone-existing-vpc", {"vpcId": "vpc-0123456789abcdef0", "nodeSubnetIds": ["subnet-00000000000000001", "subnet-00000000000000002"], "lbSubnetIds": ["subnet-0000000000000000a", "subnet-0000000000000000b"], "natGatewayPerZone": True}, "natGatewayPerZone", "applies only to a VPC this stack creates"),
    ("private-admins-public-lb", {"adminCidrs": ["10.10.0.0/16"]}, "adminCidrs", "can never reach an internet-facing load balancer"),
    ("scheme-unknown", {"loadBalancerScheme": "private"}, "loadBalancerScheme", "is not a load balancer scheme: AWS calls a load balancer reachable only from the VPC and networks routed to it 'internal'. Fix: use internet-facing or internal"),
    ("nginx-internal", {"loadBalancerType": "nginx", "loadBalancerScheme": "internal", "adminCidrs": ["10.10.0.0/16"]}, "loadBalancerScheme", "Elastic IP, which is public"),
    ("letsencrypt-internal", {"tlsSource": "letsEncrypt", "letsEncryptEmail": "ops@example.com", "loadBalancerScheme": "internal"}, "tlsSource", "HTTP-01 challenge must reach Rancher"),
    ("letsencrypt-private-zone", {"tlsSource": "letsEncrypt", "letsEncryptEmail": "ops@example.com", "hostedZonePrivate": True}, "tlsSource", "HTTP-01 challenge must reach Rancher"),
    ("private-zone-not-bool", {"hostedZonePrivate": "sometimes"}, "hostedZonePrivate", "is not a boolean. Fix: write true or false"),
    ("api-hostname-outside-zone", {"apiHostname": "api.example.org"}, "apiHostname", "must be a name in the hosted zone"),
    ("api-hostname-is-rancher", {"apiHostname": "rancher.dev.example.com"}, "apiHostname", "other than the Rancher hostname"),
    ("chart-repository-unknown", {"rancherChartRepository": "ftp://charts.example.com"}, "rancherChartRepository", "not a Rancher chart repository"),
    ("public-with-nat-flag", {"nodePlacement": "public", "natGateway": False}, "natGateway", "has no effect with public nodes"),
    ("worker-connections-low", {"nginxWorkerConnections": 64}, "nginxWorkerConnections", "must be 512-65536"),
    ("rlimit-too-low", {"nginxWorkerRlimitNofile": 10000}, "nginxWorkerRlimitNofile", "at least 2 x nginxWorkerConnections (16384)"),
    ("worker-processes-bad", {"nginxWorkerProcesses": "many"}, "nginxWorkerProcesses", "'auto' or 1-64"),
    ("proxy-timeout-short", {"nginxProxyTimeoutSeconds": 60}, "nginxProxyTimeoutSeconds", "900-86400"),
    ("api-timeout-short", {"apiReadyTimeoutSeconds": 5}, "apiReadyTimeoutSeconds", "60-7200"),
    ("cron-malformed", {"distribution": "rke2", "etcdSnapshotSchedule": "every 6 hours"}, "etcdSnapshotSchedule", "5-field cron"),
    ("retention-zero", {"distribution": "rke2", "etcdSnapshotRetention": 0}, "etcdSnapshotRetention", "1-1000"),
    ("lb-layer-unknown", {"loadBalancerLayer": "l5"}, "loadBalancerLayer", "l4 passes TLS through to Rancher's ingress, l7 ends TLS on NGINX. Fix: use l4 or l7"),
    ("tls-source-unknown", {"tlsSource": "acm"}, "tlsSource", "or a CA the stack generates (generated). Fix: use rancher, letsEncrypt, provided or generated"),
    ("node-placement-bad", {"nodePlacement": "dmz"}, "nodePlacement", "is not a node placement: nodes go in the stack's private subnets"),
    ("boolean-text", {"natGateway": "maybe"}, "natGateway", "is not a boolean. Fix: write true or false"),
    ("session-manager-text", {"sessionManager": "sometimes"}, "sessionManager", "is not a boolean. Fix: write true or false"),
    ("boundary-not-a-policy", {"iamPermissionsBoundaryArn": "arn:aws:iam::111122223333:role/admin"}, "iamPermissionsBoundaryArn", "is not an IAM policy ARN"),
    ("boundary-aws-managed", {"iamPermissionsBoundaryArn": "arn:aws:iam::aws:policy/AdministratorAccess"}, "iamPermissionsBoundaryArn", "is not an IAM policy ARN"),
    ("readers-whole-account", {"rancherBackups": True, "rancherBackupReaders": ["arn:aws:iam::111122223333:user/*"]}, "rancherBackupReaders", "admits every role or every user"),
    ("readers-every-stack", {"rancherBackups": True, "rancherBackupReaders": ["arn:aws:iam::111122223333:user/rancher-ha/*"]}, "rancherBackupReaders", "the backup users of more than one stack"),
    ("readers-stack-prefix", {"rancherBackups": True, "rancherBackupReaders": ["arn:aws:iam::111122223333:user/rancher-ha/gr*"]}, "rancherBackupReaders", "the backup users of more than one stack"),
    ("boundary-bad-name", {"iamPermissionsBoundary": "rancher ha/boundary"}, "iamPermissionsBoundary", "is neither an IAM policy name nor"),
    ("boundary-aws-managed-by-arn", {"iamPermissionsBoundary": "arn:aws:iam::aws:policy/AdministratorAccess"}, "iamPermissionsBoundary", "is neither an IAM policy name nor"),
    ("boundary-both-keys", {"iamPermissionsBoundary": "rancher-ha-workload-boundary",
                            "iamPermissionsBoundaryArn": "arn:aws:iam::111122223333:policy/rancher-ha-workload-boundary"},
     "iamPermissionsBoundaryArn", "is the earlier name of iamPermissionsBoundary"),
    ("prod-bucket-without-admins", {"environment": "prod", "snapshotBucketAdmins": []}, "snapshotBucketAdmins", "is required in prod"),
    ("bucket-admin-session-arn", {"distribution": "rke2", "snapshotBucketAdmins": ["arn:aws:sts::123456789012:assumed-role/ci/s"]}, "snapshotBucketAdmins", "not an IAM role or user ARN"),
    ("region-missing", {"aws:region": None}, "aws:region", "is required but not set"),
    ("allow-world-not-boolean", {"allowApiFromAnywhere": "sometimes"}, "allowApiFromAnywhere", "is not a boolean. Fix: write true or false"),
    ("ssh-key-empty", {"sshKeyName": ""}, "sshKeyName", "not an EC2 key pair name"),
    ("lb-subnet-malformed", {"vpcId": "vpc-0123456789abcdef0", "nodeSubnetIds": ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"], "lbSubnetIds": ["public-a", "public-b"]}, "lbSubnetIds", "not a subnet id"),
    ("multi-az-not-boolean", {"dbMultiAz": "twice"}, "dbMultiAz", "is not a boolean. Fix: write true or false"),
    ("deletion-protection-not-boolean", {"dbDeletionProtection": "maybe"}, "dbDeletionProtection", "is not a boolean. Fix: write true or false"),
    ("final-snapshot-not-boolean", {"dbFinalSnapshot": "later"}, "dbFinalSnapshot", "is not a boolean. Fix: write true or false"),
    ("protect-not-boolean", {"protectStatefulResources": "please"}, "protectStatefulResources", "is not a boolean. Fix: write true or false"),
    ("ca-not-pem", {"tlsSource": "provided", "tlsCertificate": PEM_CERT, "tlsPrivateKey": PEM_KEY, "tlsCaCertificate": "ca"}, "tlsCaCertificate", "not a PEM certificate"),
    ("snapshots-s3-on-k3s", {"etcdSnapshotS3": True}, "etcdSnapshotS3", "no etcd to snapshot"),
    ("proxy-http-scheme", {"proxyHttp": "ftp://proxy:21"}, "proxyHttp", "not a proxy URL"),
    ("quorum-opt-in-on-k3s", {"allowQuorumLossOnZoneFailure": True}, "allowQuorumLossOnZoneFailure", "applies only to rke2"),
    ("rke2-two-existing-subnets", {"distribution": "rke2", "vpcId": "vpc-0123456789abcdef0", "nodeSubnetIds": ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"], "lbSubnetIds": ["subnet-0123456789abcdef2", "subnet-0123456789abcdef3"]}, "nodeSubnetIds", "losing that zone leaves 1"),
    ("ingress-nginx-on-k3s", {"ingressController": "ingress-nginx"}, "ingressController", "K3s ships Traefik"),
    ("ingress-unknown", {"distribution": "rke2", "ingressController": "haproxy"}, "ingressController", "is not an ingress controller RKE2 packages: RKE2 packages ingress-nginx and Traefik (its `ingress-controller` option). Fix: use ingress-nginx or traefik"),
    ("region-malformed", {"aws:region": "europe"}, "aws:region", "not an AWS region"),
    ("backups-not-boolean", {"rancherBackups": "often"}, "rancherBackups", "is not a boolean. Fix: write true or false"),
    ("backup-schedule-words", {"rancherBackupSchedule": "every hour"}, "rancherBackupSchedule", "5-field cron"),
    ("backup-retention-zero", {"rancherBackupRetention": 0}, "rancherBackupRetention", "1-1000"),
    ("backup-chart-malformed", {"rancherBackups": True, "rancherBackupChartVersion": "10.0.8"}, "rancherBackupChartVersion", "not a rancher-backup chart version"),
    ("backup-chart-kubernetes-undeclared", {"rancherBackups": True, "rancherVersion": "2.15.0", "kubernetesVersion": "v1.36.0+k3s1"}, "rancherBackupChartVersion", "declares Kubernetes 1.33-1.35 (catalog.cattle.io/kube-version), not 1.36"),
    ("backup-chart-unknown-minor", {"rancherBackups": True, "rancherVersion": "2.13.3", "kubernetesVersion": "v1.33.5+k3s1"}, "rancherBackupChartVersion", "no rancher-backup chart is known"),
    ("backup-key-age-short", {"rancherBackupKeyMaxAgeDays": 1}, "rancherBackupKeyMaxAgeDays", "14-365"),
    ("restore-without-operator", {"restoreFromBackup": "rancher-ha-prod-1a2b-2026-12-07T06-00-00Z.tar.gz"}, "restoreFromBackup", "needs the rancher-backup operator"),
    ("restore-file-with-folder", {"rancherBackups": True, "restoreFromBackup": "rancher-backups/prod/x.tar.gz"}, "restoreFromBackup", "not a rancher-backup file name"),
    ("restore-encrypted-without-key", {"rancherBackups": True, "restoreFromBackup": "x-2026-12-07T06-00-00Z.tar.gz.enc"}, "restoreFromBackup", "is encrypted (.enc)"),
    ("restore-bucket-without-file", {"restoreFromBucket": "old-bucket"}, "restoreFromBucket", "has no effect without restoreFromBackup"),
    ("backup-readers-any-account", {"rancherBackups": True, "rancherBackupReaders": ["arn:aws:iam::*:user/rancher-ha/prod-eu/*"]}, "rancherBackupReaders", "not an IAM role or user ARN of one account"),
    ("backup-readers-account-root", {"rancherBackups": True, "rancherBackupReaders": ["arn:aws:iam::123456789012:root"]}, "rancherBackupReaders", "not an IAM role or user ARN of one account"),
    ("backup-readers-without-backups", {"rancherBackups": False, "rancherBackupReaders": ["arn:aws:iam::123456789012:user/rancher-ha/prod-eu/*"]}, "rancherBackupReaders", "has no effect without rancherBackups"),
    ("restore-bucket-without-folder", {"rancherBackups": True, "restoreFromBackup": "x.tar.gz", "restoreFromBucket": "old-bucket"}, "restoreFromBucket", "needs restoreFromFolder"),
    ("restore-folder-slash", {"rancherBackups": True, "restoreFromBackup": "x.tar.gz", "restoreFromBucket": "b", "restoreFromFolder": "/rancher-backups/prod/"}, "restoreFromFolder", "must not start or end with '/'"),
    ("restore-region-without-file", {"restoreFromRegion": "eu-west-1"}, "restoreFromRegion", "has no effect without restoreFromBackup"),
    ("restore-key-not-32-bytes", {"rancherBackups": True, "restoreFromBackup": "x.tar.gz.enc", "restoreEncryptionKey": "c2hvcnQ="}, "restoreEncryptionKey", "not the base64 of 32 bytes"),
    ("take-over-not-boolean", {"takeOverDnsRecords": "yes please"}, "takeOverDnsRecords", "is not a boolean. Fix: write true or false"),
    # Restores (docs/disaster-recovery.md)
    ("etcd-restore-on-k3s", {"etcdRestoreSnapshot": "etcd-snapshot-a-1"}, "etcdRestoreSnapshot", "only rke2 keeps its state in etcd here"),
    ("etcd-restore-without-s3", {"distribution": "rke2", "etcdRestoreSnapshot": "etcd-snapshot-a-1"}, "etcdRestoreSnapshot", "can fetch a snapshot only from this stack's S3 bucket"),
    ("etcd-restore-with-folder", {"distribution": "rke2", "etcdSnapshotS3": True, "etcdRestoreSnapshot": "rancher-ha/old/etcd-snapshot-a-1"}, "etcdRestoreSnapshot", "a snapshot of another stack cannot be restored here"),
    ("db-snapshot-on-rke2", {"distribution": "rke2", "dbRestoreFromSnapshot": "my-snapshot"}, "dbRestoreFromSnapshot", "rke2 has no RDS datastore"),
    ("db-snapshot-malformed", {"dbRestoreFromSnapshot": "1 snapshot"}, "dbRestoreFromSnapshot", "not an RDS DB snapshot identifier"),
    ("db-snapshot-and-pitr", {"dbRestoreFromSnapshot": "my-snapshot", "dbRestoreSourceInstance": "datastore-mysql-1", "dbRestoreTime": "latest"}, "dbRestoreFromSnapshot", "RDS restores one or the other"),
    ("db-pitr-without-time", {"dbRestoreSourceInstance": "datastore-mysql-1"}, "dbRestoreSourceInstance", "needs both the source instance and the time"),
    ("db-pitr-source-malformed", {"dbRestoreSourceInstance": "Datastore_1", "dbRestoreTime": "latest"}, "dbRestoreSourceInstance", "not an RDS instance identifier"),
    ("db-pitr-time-malformed", {"dbRestoreSourceInstance": "datastore-mysql-1", "dbRestoreTime": "yesterday"}, "dbRestoreTime", "neither 'latest' nor a UTC time"),
    ("db-replace-not-boolean", {"dbReplaceDatastore": "sure"}, "dbReplaceDatastore", "is not a boolean. Fix: write true or false"),
]


def _config(overrides):
    config = {}
    for key, value in overrides.items():
        config[key if ":" in key else f"rancher-ha:{key}"] = value
    return config


@pytest.mark.parametrize("case_id, overrides, key, fragment", INVALID, ids=[case[0] for case in INVALID])
def test_invalid_stack_fails_before_any_resource(case_id, overrides, key, fragment):
    with pytest.raises(SettingsError) as caught:
        run(_config(overrides))
    message = str(caught.value)
    full_key = key if ":" in key else f"rancher-ha:{key}"
    matching = [line for line in message.splitlines() if full_key in line]
    assert matching, message
    assert any(fragment in line for line in matching), message
    assert any("Fix:" in line for line in matching), message
    assert caught.value.registrations == [], "a resource was registered before validation"


def test_every_setting_has_an_invalid_case():
    from settings import stack_keys

    covered = {case[2] for case in INVALID}
    assert set(stack_keys()) - covered == set()


def test_catalogue_is_large_and_distinct():
    assert len(INVALID) >= 90  # README: "90+ invalid stacks"
    assert len({case[0] for case in INVALID}) == len(INVALID)
    assert len({repr(sorted(case[1].items())) for case in INVALID}) == len(INVALID)


def test_error_names_the_value():
    with pytest.raises(SettingsError) as caught:
        run({"rancher-ha:serverInstanceType": "t3.micro"})
    assert "rancher-ha:serverInstanceType = 't3.micro'" in str(caught.value)


def test_an_invalid_distribution_is_the_only_problem_reported():
    with pytest.raises(SettingsError) as caught:
        run({"rancher-ha:distribution": "rke"})
    assert len(caught.value.problems) == 1


def test_all_problems_are_reported_at_once():
    with pytest.raises(SettingsError) as caught:
        run({"rancher-ha:serverCount": 1, "rancher-ha:hostname": "rancher.example.org"})
    assert len(caught.value.problems) == 2


def test_secret_values_are_not_echoed_in_errors():
    with pytest.raises(SettingsError) as caught:
        run({"rancher-ha:tlsSource": "provided", "rancher-ha:tlsCertificate": PEM_CERT, "rancher-ha:tlsPrivateKey": "hunter2-secret"})
    assert "hunter2-secret" not in str(caught.value)


def _settings(stack="dev", **overrides):
    values = {key.split(":", 1)[1]: value for key, value in BASE_CONFIG.items() if key.startswith("rancher-ha:")}
    values.update(overrides)
    values = with_prod_bucket_admins(values, stack, key="snapshotBucketAdmins")
    return settings_from_values(values, stack=stack, region="eu-west-1")


def test_defaults_follow_distribution_and_environment():
    k3s = _settings()
    assert (k3s.server_count, k3s.kubernetes_version, k3s.ingress_controller) == (2, versions.NEWEST_K3S_RELEASES["1.34"], "traefik")
    rke2 = _settings(distribution="rke2")
    # The newest RKE2 1.34 tag in the rancher/rke2 snapshot (reference/upstream/installers).
    assert (rke2.server_count, rke2.kubernetes_version, rke2.ingress_controller) == (3, "v1.34.10+rke2r1", "ingress-nginx")
    assert not k3s.db_deletion_protection and not k3s.protect_stateful_resources and not k3s.etcd_snapshot_s3
    prod = _settings(stack="prod")
    assert prod.db_deletion_protection and prod.db_final_snapshot and prod.db_multi_az and prod.protect_stateful_resources
    assert not prod.etcd_snapshot_s3  # k3s: RDS backups, no etcd
    assert _settings(stack="prod", distribution="rke2").etcd_snapshot_s3
    assert not _settings(stack="dev", distribution="rke2").etcd_snapshot_s3
    assert _settings(stack="feature-x", environment="staging").environment == "staging"


def test_rds_changes_apply_immediately_except_in_prod():
    """Outside prod an RDS edit lands with `pulumi up`; prod keeps it for the maintenance
    window unless the stack says otherwise."""
    assert _settings().db_apply_immediately is True
    assert _settings(stack="staging").db_apply_immediately is True
    assert _settings(stack="prod").db_apply_immediately is False
    assert _settings(stack="prod", dbApplyImmediately=True).db_apply_immediately is True
    assert _settings(dbApplyImmediately=False).db_apply_immediately is False


def test_environment_required_for_other_stack_names():
    with pytest.raises(SettingsError, match="rancher-ha:environment is required"):
        _settings(stack="feature-x")


def test_rke2_136_uses_traefik():
    settings = _settings(distribution="rke2", rancherVersion="2.15.0", kubernetesVersion="v1.36.2+rke2r1")
    assert settings.ingress_controller == "traefik"
    # ... unless the stack keeps what its cluster was created with.
    kept = _settings(distribution="rke2", rancherVersion="2.15.0", kubernetesVersion="v1.36.2+rke2r1", ingressController="ingress-nginx")
    assert kept.ingress_controller == "ingress-nginx"


def test_tls_modes():
    assert (_settings().tls_source, _settings().agent_tls_mode, _settings().private_ca) == ("rancher", "strict", False)
    l7 = _settings(loadBalancerType="nginx", loadBalancerLayer="l7")
    assert (l7.tls_source, l7.agent_tls_mode, l7.private_ca) == ("generated", "strict", True)
    public = _settings(tlsSource="provided", tlsCertificate=PEM_CERT, tlsPrivateKey=PEM_KEY)
    assert (public.agent_tls_mode, public.private_ca) == ("system-store", False)
    private = _settings(tlsSource="provided", tlsCertificate=PEM_CERT, tlsPrivateKey=PEM_KEY, tlsCaCertificate=PEM_CERT)
    assert (private.agent_tls_mode, private.private_ca) == ("strict", True)
    le = _settings(tlsSource="letsEncrypt", letsEncryptEmail="ops@example.com")
    assert (le.agent_tls_mode, le.uses_cert_manager) == ("system-store", True)


def test_world_api_allowed_only_explicitly():
    settings = _settings(adminCidrs=["0.0.0.0/0"], allowApiFromAnywhere=True)
    assert settings.admin_cidrs == ["0.0.0.0/0"]


def test_settings_are_immutable():
    settings = _settings()
    with pytest.raises(Exception):
        settings.server_count = 5


# --- every mistake in one run -----------------------------------------------------------

def _stack_file(tmp_path, name, config):
    import yaml

    (tmp_path / f"Pulumi.{name}.yaml").write_text(yaml.safe_dump({"config": config}))
    return tmp_path


def test_a_stack_file_with_four_mistakes_reports_all_four_in_one_run(tmp_path):
    from offline.runner import run_stack, stack_config

    config = stack_config("dev")
    config.update(
        {
            "rancher-ha:serverCont": 3,  # an unknown key
            "rancher-ha:serverCount": "three",  # a single-setting error
            "rancher-ha:loadBalancerType": "alb",  # another one
            "rancher-ha:adminCidrs": ["0.0.0.0/0"],  # a cross-setting error (without allowApiFromAnywhere)
        }
    )
    with pytest.raises(SettingsError) as caught:
        run_stack("dev", stacks_dir=_stack_file(tmp_path, "dev", config))
    problems = caught.value.problems
    assert [line.split(" ", 1)[0] for line in problems] == [
        "rancher-ha:serverCont",
        "rancher-ha:serverCount",
        "rancher-ha:loadBalancerType",
        "rancher-ha:adminCidrs",
    ], problems
    assert all("Fix:" in line for line in problems), problems
    assert caught.value.registrations == []


def test_cross_setting_checks_skip_what_reads_an_invalid_setting():
    # kubernetesVersion is an rke2 release; whether that fits cannot be told while the
    # distribution itself is wrong, and serverCount 4 is fine for k3s but not for rke2.
    with pytest.raises(SettingsError) as caught:
        run({"rancher-ha:distribution": "eks", "rancher-ha:kubernetesVersion": "v1.34.1+rke2r1", "rancher-ha:serverCount": 4})
    assert [line.split(" ", 1)[0] for line in caught.value.problems] == ["rancher-ha:distribution"]


def test_a_cross_setting_error_is_reported_beside_an_unrelated_field_error():
    with pytest.raises(SettingsError) as caught:
        run({"rancher-ha:serverInstanceType": "q9z.large", "rancher-ha:hostname": "rancher.example.org"})
    keys = [line.split(" ", 1)[0] for line in caught.value.problems]
    assert keys == ["rancher-ha:serverInstanceType", "rancher-ha:hostname"], caught.value.problems


def test_a_key_in_another_namespace_is_refused_with_the_right_one():
    with pytest.raises(SettingsError) as caught:
        run({"rancherha:distribution": "rke2", "rancher-ha:natGatway": True})
    lines = caught.value.problems
    assert any(
        line.startswith("rancherha:distribution = 'rke2': is in namespace 'rancherha'") and "Fix: rename it to 'rancher-ha:distribution'" in line
        for line in lines
    ), lines
    assert any(line.startswith("rancher-ha:natGatway") and "natGateway" in line for line in lines), lines


def test_provider_namespaces_stay_allowed():
    run({"aws:profile": "ops", "aws:skipMetadataApiCheck": "false", "kubernetes:enableServerSideApply": "true", "pulumi:tags": "{}"})


def test_a_missing_hostname_is_not_also_a_missing_api_hostname():
    with pytest.raises(SettingsError) as caught:
        run({"rancher-ha:hostname": None})
    assert len(caught.value.problems) == 1, caught.value.problems
    assert caught.value.problems[0].startswith("rancher-ha:hostname is required but not set. Fix:")


def test_instance_types_are_the_ec2_apis_list():
    from settings.instance_types import SOURCE, instance_types

    types = instance_types()
    assert {"m6i.xlarge", "t3.large", "t3.small", "c7g.medium", "u-12tb1.112xlarge"} <= types
    assert not {"t3.24xlarge", "q9z.large"} & types
    assert len(types) > 1000
    assert SOURCE.startswith("botocore ")


def test_copying_a_stack_file_to_start_a_new_stack_works(tmp_path):
    # README ("Deploying for real"): copy a stack file to stacks/Pulumi.<new stack>.yaml.
    from offline.runner import stack_config
    from settings.loader import settings_from_config

    for environment in ("dev", "staging", "prod"):
        config = stack_config(environment)
        original = settings_from_config(config, stack=environment)
        copy = settings_from_config(stack_config("team-a", _stack_file(tmp_path, "team-a", config)), stack="team-a")
        assert copy == original, environment


def test_every_cross_setting_check_is_guarded():
    # A check outside `with guard:` would crash validation whenever a setting it reads
    # failed on its own, instead of being skipped while the other checks still report.
    import ast
    import inspect
    import textwrap

    from settings.model import Settings

    function = ast.parse(textwrap.dedent(inspect.getsource(Settings.combination_problems))).body[0]
    body = function.body[function.body.index(next(s for s in function.body if isinstance(s, ast.FunctionDef))) + 1 : -1]
    checks = [statement for statement in body if not isinstance(statement, ast.Expr)]
    unguarded = [
        ast.unparse(statement).splitlines()[0]
        for statement in checks
        if not (isinstance(statement, ast.With) and ast.unparse(statement.items[0].context_expr) == "guard")
    ]
    assert len(checks) > 20 and unguarded == [], unguarded


def test_derived_from_names_every_derived_default():
    from settings.model import DERIVED_FROM, Settings

    derived = set(Settings._derive_defaults({"hostname": "rancher.example.com"})) - {"hostname"}
    assert derived == set(DERIVED_FROM)


# ------------------------------------------------- etcd quorum across a zone's loss
def test_rke2_on_two_existing_subnets_is_refused_unless_explicitly_accepted():
    """Two node subnets put two of three etcd members in one zone: losing it loses quorum."""
    two = {"distribution": "rke2", "vpcId": "vpc-0123456789abcdef0",
           "nodeSubnetIds": ["subnet-00000000000000001", "subnet-00000000000000002"],
           "lbSubnetIds": ["subnet-0000000000000000a", "subnet-0000000000000000b"]}
    with pytest.raises(SettingsError) as caught:
        _settings(**two)
    (line,) = [p for p in caught.value.problems if "rancher-ha:nodeSubnetIds" in p]
    assert "['subnet-00000000000000001', 'subnet-00000000000000002']" in line
    assert "losing that zone leaves 1, fewer than the 2 etcd needs" in line
    assert "Fix:" in line and "allowQuorumLossOnZoneFailure: true" in line
    assert _settings(**two, allowQuorumLossOnZoneFailure=True).allow_quorum_loss_on_zone_failure
    # K3s keeps its state in RDS, not etcd: two subnets are fine.
    _settings(**{**two, "distribution": "k3s"})


@pytest.mark.parametrize("count, zones, lost", [
    (3, ["a", "b"], "a"), (5, ["a", "b"], "a"), (7, ["a", "b"], "a"), (3, ["a", "a", "b"], "a"),
    (5, ["a", "b", "b"], "b"), (4, ["a", "b"], "a"), (3, ["a", "b", "c"], None), (5, ["a", "b", "c"], None), (7, ["a", "b", "c"], None),
])
def test_quorum_after_losing_the_fullest_zone(count, zones, lost):
    from settings.placement import quorum_loss_on_zone_failure

    risk = quorum_loss_on_zone_failure(count, zones)
    assert (risk.zone if risk else None) == lost
    if risk:
        assert 2 * risk.survivors <= count


def test_existing_subnets_that_share_a_zone_are_refused_at_deploy(monkeypatch):
    """Three subnets, but AWS says two are in one zone (only AWS knows): refused before any
    server exists, unless explicitly accepted."""
    from offline import mocks

    original = mocks.StackMocks.call

    def call(self, args):
        if args.token == "aws:ec2/getSubnet:getSubnet":
            answer, failures = original(self, args)
            return {**answer, "availabilityZone": "eu-west-1a" if answer["id"].endswith(("1", "2")) else "eu-west-1b"}, failures
        return original(self, args)

    monkeypatch.setattr(mocks.StackMocks, "call", call)
    from conftest import EXISTING_VPC, RKE2

    with pytest.raises(Exception) as caught:
        run({**EXISTING_VPC, **RKE2})
    message = str(caught.value)
    assert "rancher-ha:nodeSubnetIds = ['subnet-00000000000000001', 'subnet-00000000000000002', 'subnet-00000000000000003']" in message
    assert "eu-west-1a holds 2 of them" in message and "Fix:" in message
    assert getattr(caught.value, "registrations", None) == [], "a resource was registered before the refusal"
    accepted = run({**EXISTING_VPC, **RKE2, "rancher-ha:allowQuorumLossOnZoneFailure": True})
    assert len(accepted.of_type("aws:ec2/instance:Instance")) == 3
    assert any("allowQuorumLossOnZoneFailure" in line for line in accepted.logs)


# ------------------------------------------------------------ installer pins (issue 18 #7)
def test_installer_pins_record_their_source_and_the_update_tool_derives_them(tmp_path):
    """The pins carry where they came from; tools/update_versions.py derives an RKE2 pin
    and the newest tag per minor from a git snapshot (here a tiny one made on the spot)."""
    import hashlib
    import json
    import subprocess

    from settings import versions
    from tools import update_versions

    data = json.loads(versions.INSTALLERS_DATA.read_text())
    for distribution, pin in data["installers"].items():
        assert pin["url"] == f"https://raw.githubusercontent.com/{pin['repository']}/{pin['commit']}/install.sh", distribution
        assert len(pin["commit"]) == 40 and len(pin["sha256"]) == 64 and pin["checksum_from"], distribution
    assert versions.EXAMPLE_KUBERNETES_VERSION["rke2"] == data["releases"]["rke2"]["newest_per_minor"]["1.34"]
    assert versions.EXAMPLE_KUBERNETES_VERSION["k3s"] == data["releases"]["k3s"]["newest_per_minor"]["1.34"]
    for minor, release in data["releases"]["k3s"]["newest_per_minor"].items():
        commit = data["releases"]["k3s"]["commits"][minor]
        assert re.fullmatch(r"[0-9a-f]{40}", commit["commit"]) and f"Update to v{release[1:].split('+')[0]}" in commit["subject"]

    git_dir = tmp_path / "rke2"
    subprocess.run(["git", "init", "-q", str(git_dir)], check=True)
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.com", "PATH": "/usr/bin:/bin"}
    for tag, body in (("v1.34.9+rke2r1", "a\n"), ("v1.34.10+rke2r1", "b\n"), ("v1.36.3+rke2r1", "c\n"), ("v1.36.3-rc1+rke2r1", "d\n")):
        (git_dir / "install.sh").write_text(body)
        subprocess.run(["git", "-C", str(git_dir), "add", "install.sh"], check=True, env=env)
        subprocess.run(["git", "-C", str(git_dir), "commit", "-qm", tag], check=True, env=env)
        subprocess.run(["git", "-C", str(git_dir), "tag", tag], check=True, env=env)
    dot_git = str(git_dir / ".git")
    assert update_versions.newest_rke2_tags(dot_git) == {"1.34": "v1.34.10+rke2r1", "1.36": "v1.36.3+rke2r1"}
    pin = update_versions.installer_at(dot_git, "rancher/rke2", "v1.36.3+rke2r1")
    assert pin["sha256"] == hashlib.sha256(b"c\n").hexdigest() and pin["commit"] in pin["url"]


def test_the_update_tool_finds_k3s_releases_from_k3s_commits(tmp_path):
    """`k3s-releases`: the newest "Update to v1.X.Y" of each current branch, as v1.X.Y+k3s1;
    a release candidate is not a release; a branch the snapshot stopped carrying two months
    before its newest update is left out."""
    import subprocess

    from tools import update_versions

    git_dir = tmp_path / "k3s"
    subprocess.run(["git", "init", "-q", str(git_dir)], check=True)
    for date, subject in (("2026-01-10", "Update to v1.32.5 (#1)"), ("2026-05-13", "Update to v1.34.7 (#2)"),
                          ("2026-05-13", "[release-1.34] Update to v1.34.8-k3s1 and Go 1.25.9 (#3)"),
                          ("2026-06-16", "Update to v1.36.2 (#4)"), ("2026-06-20", "Update to v1.36.10-rc1 notes"),
                          ("2026-06-21", "Bump to v1.99.0 (#5)")):
        env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
               "GIT_COMMITTER_EMAIL": "t@example.com", "PATH": "/usr/bin:/bin",
               "GIT_AUTHOR_DATE": f"{date}T12:00:00Z", "GIT_COMMITTER_DATE": f"{date}T12:00:00Z"}
        subprocess.run(["git", "-C", str(git_dir), "commit", "-q", "--allow-empty", "-m", subject], check=True, env=env)
    found = update_versions.newest_k3s_releases(str(git_dir / ".git"))
    assert {minor: entry["release"] for minor, entry in found.items()} == {"1.34": "v1.34.8+k3s1", "1.36": "v1.36.2+k3s1"}
    assert found["1.34"]["date"] == "2026-05-13" and "v1.34.8-k3s1" in found["1.34"]["subject"]
