"""The one typed model of a stack's configuration.

Every value a component needs is decided here, before any resource is registered:
defaults that depend on other settings (environment, distribution, layer) are filled
in, and combinations that cannot work are refused with the key, the value and a fix.
Components receive an immutable `Settings` and never read `pulumi.Config` themselves.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any, Literal, Optional, TypeGuard

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from . import placement, versions
from .instance_types import memory_gib, validate_instance_type

RANCHER_MIN_MEMORY_GIB = 4
ENVIRONMENTS = ("dev", "staging", "prod")
HOSTNAME_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
CRON_FIELD = re.compile(r"^[0-9*/,\-]+$")
# Schedules the operator's cron parser (robfig/cron) accepts besides 5 fields.
BACKUP_DESCRIPTORS = ("@hourly", "@daily", "@midnight", "@weekly")
PROXY_URL = re.compile(r"^https?://[^\s/@]+(:\d+)?/?$")
IAM_POLICY_NAME = re.compile(r"^[\w+=,.@-]{1,128}$")
IAM_POLICY_ARN = re.compile(r"^arn:aws(-[a-z]+)*:iam::\d{12}:policy/([\w+=,.@-]+/)*[\w+=,.@-]+$")
# The account may be `*`: the bucket policy only denies, so a name matched in another
# account gains nothing (it still needs an allow from this account).
IAM_PRINCIPAL_ARN = re.compile(r"^arn:aws(-[a-z]+)*:iam::(\d{12}|\*):(root|(role|user)/[\w+=,.@/*-]+)$")
# A reader of the Rancher backups: a role or user (pattern) of one named account, which the
# bucket and key policies name as principal (they cannot name a pattern or an unborn user).
BACKUP_READER_ARN = re.compile(r"^arn:aws(-[a-z]+)*:iam::\d{12}:(role|user)/[\w+=,.@/*-]+$")
SUBNET_ID = re.compile(r"^subnet-[0-9a-f]{8,17}$")
VPC_ID = re.compile(r"^vpc-[0-9a-f]{8,17}$")
# An RKE2 snapshot's file name (etcd-snapshot-<node>-<unix time>, maybe .zip): no folder.
ETCD_SNAPSHOT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")
# RDS: manual snapshots "<letter>[a-z0-9-]*", automated ones "rds:<instance>-<date>", or an ARN.
RDS_SNAPSHOT = re.compile(r"^((rds:)?[A-Za-z][A-Za-z0-9-]{0,254}|arn:aws[a-z-]*:rds:[a-z0-9-]+:\d{12}:snapshot:(rds:)?[A-Za-z][A-Za-z0-9-]*)$")
RDS_INSTANCE = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
UTC_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")


class _Unknown:
    """The value of a setting that failed its own validation: any use of it is refused."""

    def _refuse(self, *args: Any, **kwargs: Any) -> Any:
        raise _Skipped

    __bool__ = __eq__ = __ne__ = __lt__ = __le__ = __gt__ = __ge__ = __contains__ = _refuse
    __iter__ = __len__ = __str__ = __repr__ = __format__ = __getattr__ = __hash__ = _refuse


class _Skipped(Exception):
    pass


UNKNOWN = _Unknown()


class _SkipWhereUnknown:
    """Runs one combination check; on a partial view, a check that fails is skipped."""

    def __init__(self, partial: bool):
        self.partial = partial

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, error: Any, traceback: Any) -> bool:
        # A check that read an UNKNOWN setting (directly, or through a value computed
        # from one) cannot be evaluated. On a complete stack nothing is swallowed.
        return self.partial and error is not None and isinstance(error, Exception)


def _is_stack_mapping(value: object) -> TypeGuard[dict[str, Any]]:
    """A stack's settings as handed to validation: key -> raw value."""
    return isinstance(value, dict)


def _each_matches(values: list[str], pattern: re.Pattern[str], problem: str) -> list[str]:
    """A list setting's validator: the first value that does not match fails with `problem`."""
    for value in values:
        if not pattern.match(value):
            raise ValueError(f"contains '{value}', which {problem}")
    return values


def _to_camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def _is_secretbox_key(text: str) -> bool:
    import base64
    import binascii

    try:
        return len(base64.b64decode(text, validate=True)) == 32
    except (binascii.Error, ValueError):
        return False


def _doc(description: str, validation: str, default_doc: str | None = None) -> dict[str, Any]:
    extra: dict[str, Any] = {"validation": validation}
    if default_doc is not None:
        extra["default_doc"] = default_doc
    return {"description": description, "json_schema_extra": extra}


def _cidr(value: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(value, strict=True)
    except ValueError as error:
        raise ValueError(
            f"is not a CIDR block ({error}). Fix: write a network address with a prefix, "
            "e.g. '203.0.113.0/24' or '198.51.100.7/32'"
        ) from None


def _hostname(value: str) -> str:
    name = value.rstrip(".").lower()
    labels = name.split(".")
    if len(labels) < 2 or len(name) > 253 or not all(HOSTNAME_LABEL.match(label) for label in labels):
        raise ValueError(
            "is not a fully qualified DNS name. Fix: use lowercase letters, digits and "
            "hyphens in dot-separated labels, e.g. 'rancher.example.com'"
        )
    return name


# Networks whose traffic reaches an internet-facing address only through NAT (RFC 1918,
# carrier-grade NAT, IPv6 unique-local). Documentation ranges (203.0.113.0/24 ...) are
# public as far as a load balancer can tell, although Python calls them "private".
PRIVATE_V4 = tuple(ipaddress.IPv4Network(cidr) for cidr in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10"))
PRIVATE_V6 = (ipaddress.IPv6Network("fc00::/7"),)


def _only_reachable_privately(cidr: str) -> bool:
    network = _cidr(cidr)
    if isinstance(network, ipaddress.IPv4Network):
        return any(network.subnet_of(private) for private in PRIVATE_V4)
    return any(network.subnet_of(private) for private in PRIVATE_V6)


# Settings whose default `_derive_defaults` computes from other settings (stack key ->
# the keys it reads). A derived value is as unknown as what it derives from.
DERIVED_FROM: dict[str, tuple[str, ...]] = {
    "serverCount": ("distribution",),
    "kubernetesVersion": ("distribution",),
    "tlsSource": ("loadBalancerLayer",),
    "dbMultiAz": ("environment",),
    "dbDeletionProtection": ("environment",),
    "dbFinalSnapshot": ("environment",),
    "dbApplyImmediately": ("environment",),
    "rancherBackups": ("environment",),
    "protectStatefulResources": ("environment",),
    "etcdSnapshotS3": ("distribution", "environment"),
    "natGatewayPerZone": ("environment", "natGateway", "nodePlacement", "vpcId"),
    "apiHostname": ("hostname",),
}


class Settings(BaseModel):
    """A validated stack. Field names are snake_case; stack keys are their camelCase aliases."""

    model_config = ConfigDict(
        alias_generator=_to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        str_strip_whitespace=True,
    )

    # --- what and where -------------------------------------------------------------
    environment: Literal["dev", "staging", "prod"] = Field(
        **_doc(
            "Environment class; sets the safety defaults (deletion protection, Multi-AZ, protect).",
            "one of dev, staging, prod",
            "the stack name when it is dev/staging/prod, else required",
        )
    )
    distribution: Literal["k3s", "rke2"] = Field(
        "k3s",
        **_doc(
            "Kubernetes distribution: k3s (2+ servers, external MySQL) or rke2 (3/5/7 servers, embedded etcd).",
            "k3s or rke2; 'rke' (RKE1) is end of life",
        ),
    )
    hostname: str = Field(
        **_doc("Rancher's fully qualified hostname.", "FQDN inside hostedZone")
    )
    hosted_zone: str = Field(
        **_doc("Route53 hosted zone that holds the hostname (public, or private with hostedZonePrivate).", "a DNS name that is a suffix of hostname")
    )
    hosted_zone_private: bool = Field(
        False,
        **_doc(
            "hostedZone is a Route53 private zone instead of a public one: a created VPC is associated with it by the stack, an existing VPC must be already.",
            "boolean; not with letsEncrypt",
        ),
    )
    api_hostname: str = Field(
        **_doc(
            "Stable DNS name of the Kubernetes API (kubeconfig, tls-san); a record in hostedZone.",
            "FQDN inside hostedZone, not the Rancher hostname",
            "api.<hostname>",
        )
    )
    region: str = Field(
        **_doc("AWS region, read from `aws:region`.", "e.g. eu-west-1", "required (aws:region)")
    )
    aws_account: Optional[str] = Field(
        None,
        **_doc(
            "Which AWS account the stack deploys into (a name or an account id), for the quota check only: stacks with the same awsAccount and region share that account's regional quotas.",
            "lowercase letters, digits and hyphens",
            "none: the account shared by every stack without awsAccount",
        ),
    )

    # --- versions -------------------------------------------------------------------
    rancher_version: str = Field(
        "2.14.4",
        **_doc("Rancher chart version, in rancherChartRepository.", "X.Y.Z with a supported minor (2.12-2.15)"),
    )
    rancher_chart_repository: str = Field(
        "stable",
        **_doc(
            "Rancher chart repository: stable, latest, prime, or an https URL (e.g. a mirror).",
            "stable, latest, prime, or https://...",
        ),
    )
    kubernetes_version: str = Field(
        **_doc(
            "Exact K3s/RKE2 release to install.",
            "v1.N.P+k3sR or v1.N.P+rke2rR, matching distribution, within Rancher's range",
            f"{versions.EXAMPLE_KUBERNETES_VERSION['k3s']} (k3s) / {versions.EXAMPLE_KUBERNETES_VERSION['rke2']} (rke2)",
        )
    )
    ingress_controller_choice: Optional[Literal["ingress-nginx", "traefik"]] = Field(
        None,
        alias="ingressController",
        **_doc(
            "RKE2's ingress controller. Chosen once: a running cluster keeps it across Kubernetes minors "
            "(the identity lock refuses a change).",
            "ingress-nginx or traefik (rke2); traefik (k3s)",
            "for a new stack, RKE2's default of kubernetesVersion's minor: ingress-nginx up to 1.35, "
            "traefik from 1.36; k3s: traefik",
        ),
    )
    cert_manager_version: str = Field(
        "v1.19.2",
        **_doc("cert-manager chart version (jetstack).", "vX.Y.Z, at least v1.15"),
    )

    # --- server nodes ---------------------------------------------------------------
    server_count: int = Field(
        **_doc(
            "Number of server nodes.",
            "k3s: 2-7; rke2: 3, 5 or 7 (odd, for etcd quorum)",
            "2 (k3s) / 3 (rke2)",
        )
    )
    server_instance_type: str = Field(
        "m6i.xlarge",
        **_doc("EC2 type of the server nodes.", "in the EC2 API's list of types (botocore), with at least 4 GiB memory"),
    )
    server_root_volume_gb: int = Field(
        60, **_doc("Encrypted gp3 root volume size of each server.", "30-16384")
    )
    admin_cidrs: list[str] = Field(
        **_doc(
            "Networks allowed to reach the Kubernetes API (6443); must include where `pulumi up` runs.",
            "non-empty list of CIDRs; 0.0.0.0/0 only with allowApiFromAnywhere",
        )
    )
    allow_api_from_anywhere: bool = Field(
        False, **_doc("Explicitly allow 0.0.0.0/0 or ::/0 in adminCidrs.", "boolean")
    )
    ssh_key_name: Optional[str] = Field(
        None, **_doc("EC2 key pair for break-glass SSH; opens port 22 to adminCidrs only.", "key pair name", "none (no SSH)")
    )
    session_manager: bool = Field(
        True,
        **_doc(
            "Break-glass shell on every node through AWS Session Manager (no SSH, no open port); "
            "grants the nodes only the managed-instance actions a session needs.",
            "boolean",
        ),
    )
    iam_permissions_boundary: Optional[str] = Field(
        None,
        **_doc(
            "Permissions boundary of the IAM roles and the backup user the stack creates: a customer-managed "
            "policy's name, in the account `pulumi up` runs in (the program builds the ARN from that account "
            "and partition), or its ARN. Required when the CI deploy roles deploy (docs/ci-roles), which "
            "create roles and users only with their boundary: rancher-ha-workload-boundary.",
            "IAM policy name ([\\w+=,.@-], up to 128) or ARN (arn:<partition>:iam::<account>:policy/<name>)",
            "rancher-ha-workload-boundary in the stacks the deploy workflow deploys; else none (no boundary)",
        ),
    )
    iam_permissions_boundary_arn: Optional[str] = Field(
        None,
        **_doc(
            "Earlier name of iamPermissionsBoundary (an ARN only); still read. Set one of the two.",
            "IAM policy ARN (arn:<partition>:iam::<account>:policy/<name>)",
            "none",
        ),
    )
    imds_hop_limit: int = Field(
        1,
        **_doc(
            "IMDSv2 response hop limit; 1 keeps pods away from the instance credentials.",
            "1-64",
        ),
    )

    allow_quorum_loss_on_zone_failure: bool = Field(
        False,
        **_doc(
            "Accept an RKE2 server placement where losing one availability zone loses etcd quorum "
            "(servers in fewer than 3 zones).",
            "boolean; rke2 only",
        ),
    )

    # --- network --------------------------------------------------------------------
    vpc_id: Optional[str] = Field(
        None, **_doc("Existing VPC to use instead of creating one.", "vpc-<hex>", "none (create a VPC)")
    )
    node_subnet_ids: list[str] = Field(
        default_factory=list,
        **_doc("Existing subnets for the server nodes (with vpcId).", "subnet-<hex> list, 2 or more"),
    )
    lb_subnet_ids: list[str] = Field(
        default_factory=list,
        **_doc("Existing public subnets for the load balancer (with vpcId).", "subnet-<hex> list, 2 or more"),
    )
    vpc_cidr: str = Field(
        "10.0.0.0/16", **_doc("CIDR of the created VPC.", "IPv4 CIDR, /16 to /22")
    )
    node_placement: Literal["private", "public"] = Field(
        "private",
        **_doc(
            "Put nodes in private subnets (egress through NAT or proxy) or public subnets.",
            "private or public",
        ),
    )
    nat_gateway: bool = Field(
        True, **_doc("Create a NAT gateway for private nodes (created VPC only).", "boolean")
    )
    nat_gateway_per_zone: bool = Field(
        **_doc(
            "One NAT gateway per zone, so losing a zone does not cut the others off (created VPC).",
            "boolean; needs natGateway and private nodes",
            "true in prod, else false",
        )
    )
    cluster_cidr: str = Field(
        "10.42.0.0/16", **_doc("Pod network.", "IPv4 CIDR not overlapping the VPC")
    )
    service_cidr: str = Field(
        "10.43.0.0/16", **_doc("Service network.", "IPv4 CIDR not overlapping the VPC or pods")
    )

    # --- datastore (k3s) ------------------------------------------------------------
    db_instance_class: str = Field(
        "db.t4g.medium", **_doc("RDS instance class of the K3s datastore.", "db.<family>.<size>")
    )
    db_engine_version: str = Field(
        "8.4", **_doc("RDS MySQL engine version.", "8.4 or 8.4.x (5.7 and 8.0 are in extended support)")
    )
    db_allocated_storage_gb: int = Field(
        20, **_doc("RDS storage (gp3, encrypted).", "20-65536")
    )
    db_backup_retention_days: int = Field(
        7, **_doc("Automated backup retention.", "1-35 (backups cannot be turned off)")
    )
    db_multi_az: bool = Field(
        **_doc("Multi-AZ RDS standby.", "boolean", "true in prod, else false")
    )
    db_deletion_protection: bool = Field(
        **_doc("RDS deletion protection.", "boolean", "true in prod, else false")
    )
    db_final_snapshot: bool = Field(
        **_doc("Take a final RDS snapshot on delete.", "boolean", "true in prod, else false")
    )
    db_apply_immediately: bool = Field(
        **_doc(
            "Apply RDS edits (class, Multi-AZ, storage, engine version) during `pulumi up`; false: in the next maintenance window.",
            "boolean",
            "false in prod, else true",
        )
    )
    protect_stateful_resources: bool = Field(
        **_doc("Pulumi `protect` on the datastore and the snapshot bucket.", "boolean", "true in prod, else false")
    )
    db_restore_from_snapshot: Optional[str] = Field(
        None,
        **_doc(
            "K3s: create the datastore from this RDS snapshot of this stack's datastore (docs/disaster-recovery.md).",
            "an RDS snapshot identifier or ARN; not with dbRestoreSourceInstance; needs dbReplaceDatastore on a deployed stack",
            "none",
        ),
    )
    db_restore_source_instance: Optional[str] = Field(
        None,
        **_doc(
            "K3s: create the datastore as a point-in-time restore of this RDS instance (this stack's datastore).",
            "an RDS instance identifier; with dbRestoreTime; needs dbReplaceDatastore on a deployed stack",
            "none",
        ),
    )
    db_restore_time: Optional[str] = Field(
        None,
        **_doc(
            "Point in time for dbRestoreSourceInstance: 'latest' (the latest restorable time) or a UTC time.",
            "'latest' or YYYY-MM-DDTHH:MM:SSZ",
            "none",
        ),
    )
    db_replace_datastore: bool = Field(
        False,
        **_doc(
            "Confirms that a restore setting may replace this deployed stack's datastore (the identity lock refuses it otherwise).",
            "boolean",
        ),
    )

    # --- load balancer --------------------------------------------------------------
    load_balancer_type: Literal["nlb", "nginx"] = Field(
        "nlb", **_doc("Load balancer: AWS NLB or a dedicated NGINX instance.", "nlb or nginx")
    )
    load_balancer_layer: Literal["l4", "l7"] = Field(
        "l4",
        **_doc(
            "l4: TCP pass-through, TLS ends in the cluster; l7: TLS ends on NGINX (tls=external).",
            "l4 or l7 (l7 needs nginx)",
        ),
    )
    load_balancer_scheme: Literal["internet-facing", "internal"] = Field(
        "internet-facing",
        **_doc(
            "internet-facing, or internal (reachable only from the VPC and networks routed to it).",
            "internet-facing or internal; internal is not for letsEncrypt",
        ),
    )
    nginx_instance_type: str = Field(
        "t3.small", **_doc("EC2 type of the NGINX load balancer.", "in the EC2 API's list of types (botocore)")
    )
    nginx_worker_processes: str = Field(
        "auto", **_doc("NGINX worker_processes.", "'auto' or 1-64")
    )
    nginx_worker_connections: int = Field(
        8192, **_doc("NGINX worker_connections (long-lived WebSockets).", "512-65536")
    )
    nginx_worker_rlimit_nofile: int = Field(
        40000, **_doc("NGINX worker_rlimit_nofile.", "at least 2 x nginxWorkerConnections, at most 1048576")
    )
    nginx_proxy_timeout_seconds: int = Field(
        1800, **_doc("NGINX proxy timeout for WebSockets and watches (L4 stream, L7 read/send, and the cluster's ingress-nginx).", "900-86400")
    )

    # --- TLS ------------------------------------------------------------------------
    tls_source: Literal["rancher", "letsEncrypt", "provided", "generated"] = Field(
        **_doc(
            "Where Rancher's certificate comes from.",
            "l4: rancher, letsEncrypt, provided or generated; l7: provided or generated",
            "rancher (l4) / generated (l7)",
        )
    )
    tls_certificate: Optional[str] = Field(
        None, **_doc("PEM certificate (chain) for tlsSource=provided.", "PEM CERTIFICATE", "none")
    )
    tls_private_key: Optional[SecretStr] = Field(
        None, **_doc("PEM private key for tlsSource=provided; set it with --secret.", "PEM PRIVATE KEY", "none")
    )
    tls_ca_certificate: Optional[str] = Field(
        None,
        **_doc(
            "PEM CA chain when the provided certificate is from a private CA (sets privateCA).",
            "PEM CERTIFICATE",
            "none (publicly trusted)",
        ),
    )
    lets_encrypt_email: Optional[str] = Field(
        None, **_doc("ACME account e-mail for tlsSource=letsEncrypt.", "an e-mail address", "none")
    )

    # --- cluster access and Rancher -------------------------------------------------
    api_ready_timeout_seconds: int = Field(
        1200, **_doc("How long `pulumi up` waits for the Kubernetes API.", "60-7200")
    )

    # --- etcd snapshots (rke2) ------------------------------------------------------
    etcd_snapshot_schedule: str = Field(
        "0 */6 * * *", **_doc("RKE2 etcd snapshot cron schedule.", "5-field cron expression")
    )
    etcd_snapshot_retention: int = Field(
        28, **_doc("Snapshots kept.", "1-1000")
    )
    etcd_snapshot_s3: bool = Field(
        **_doc("Also upload etcd snapshots to an S3 bucket created by the stack (rke2).", "boolean; rke2 only", "true for rke2 in staging and prod, else false")
    )
    snapshot_bucket_admins: list[str] = Field(
        default_factory=list,
        **_doc(
            "IAM roles or users that manage the snapshot bucket: every identity that runs `pulumi up`, refresh or "
            "destroy (CI's deploy role, a break-glass role); required in prod. The identity running `pulumi up` is "
            "always admitted too. None of them may read or write a snapshot.",
            "IAM role/user ARNs (arn:<partition>:iam::<account>:role/... or user/...; * allowed)",
        ),
    )

    # --- Rancher backups and restore (rancher-backup operator) ----------------------
    rancher_backups: bool = Field(
        **_doc(
            "Install the rancher-backup operator with scheduled, encrypted backups to the stack's bucket, "
            "and a backup before every Rancher chart upgrade.",
            "boolean",
            "true in staging and prod, else false",
        )
    )
    rancher_backup_schedule: str = Field(
        "0 * * * *",
        **_doc("Cron schedule of the Rancher backup (the recovery point: at most this old).",
               "5-field cron expression or @hourly/@daily/@midnight/@weekly"),
    )
    rancher_backup_retention: int = Field(
        168, **_doc("Scheduled Rancher backup files kept.", "1-1000")
    )
    rancher_backup_chart_version: Optional[str] = Field(
        None,
        **_doc(
            "rancher-backup(-crd) chart version in https://charts.rancher.io.",
            "NNN.N.N+upN.N.N, of the operator line of the Rancher minor",
            "109.0.7+up10.0.8 for Rancher 2.14, 110.0.0+up11.0.0 for 2.15; required for other minors",
        ),
    )
    rancher_backup_key_max_age_days: int = Field(
        90,
        **_doc("Age at which the backup user's access key is replaced (by the first `pulumi up` after half of it).",
               "14-365"),
    )
    restore_from_backup: Optional[str] = Field(
        None,
        **_doc(
            "Restore Rancher from this rancher-backup file before installing Rancher (a new stack taking over "
            "an old one). Keep it set afterwards; removing it deletes only the Restore object.",
            "a file name ending in .tar.gz or .tar.gz.enc",
            "none",
        ),
    )
    restore_from_bucket: Optional[str] = Field(
        None, **_doc("Bucket holding restoreFromBackup (the old stack's etcdSnapshotBucket output).", "an S3 bucket name", "the stack's own bucket")
    )
    restore_from_folder: Optional[str] = Field(
        None, **_doc("Folder of restoreFromBackup in restoreFromBucket (the old stack's rancherBackupFolder output).", "a key prefix without slashes at the ends", "none; required with restoreFromBucket")
    )
    restore_from_region: Optional[str] = Field(
        None, **_doc("Region of restoreFromBucket.", "an AWS region", "the stack's region")
    )
    restore_encryption_key: Optional[SecretStr] = Field(
        None,
        **_doc(
            "The old stack's rancherBackupEncryptionKey output, for an encrypted (.enc) restoreFromBackup; set it with --secret.",
            "base64 of 32 bytes",
            "none",
        ),
    )
    rancher_backup_readers: list[str] = Field(
        default_factory=list,
        **_doc(
            "Who may read this stack's Rancher backups to move Rancher to a new stack: the new stack's backup user, "
            "named before it exists as arn:aws:iam::<account>:user/rancher-ha/<new stack>/*. They may get the files "
            "in rancherBackupFolder and decrypt them through S3, nothing else (never an etcd snapshot, never a "
            "write); see docs/disaster-recovery.md#move-to-a-new-stack.",
            "IAM role/user ARNs of a named account (arn:<partition>:iam::<account>:user/... or role/...; * allowed in the name)",
        ),
    )
    take_over_dns_records: bool = Field(
        False,
        **_doc(
            "Overwrite existing Route53 records of hostname and apiHostname (another stack's) instead of failing.",
            "boolean",
        ),
    )
    etcd_restore_snapshot: Optional[str] = Field(
        None,
        **_doc(
            "RKE2: the first server restores this S3 snapshot (cluster-reset) when it is next created; see docs/disaster-recovery.md.",
            "a snapshot file name in this stack's bucket folder; rke2 with etcdSnapshotS3",
            "none",
        ),
    )

    # --- proxy ----------------------------------------------------------------------
    proxy_http: Optional[str] = Field(
        None, **_doc("HTTP proxy URL for nodes, Rancher and cert-manager.", "http(s)://host:port", "none")
    )
    proxy_https: Optional[str] = Field(
        None, **_doc("HTTPS proxy URL.", "http(s)://host:port", "none")
    )
    proxy_no_proxy: list[str] = Field(
        default_factory=list,
        **_doc(
            "Extra NO_PROXY entries; cluster, VPC and hostname entries are added automatically.",
            "list of hosts, domains or CIDRs without spaces",
        ),
    )

    # --------------------------------------------------------------------------------
    @model_validator(mode="before")
    @classmethod
    def _derive_defaults(cls, data: Any) -> Any:
        if not _is_stack_mapping(data):
            return data
        data = dict(data)
        # Accept both aliases and field names, but decide defaults on the alias.
        env = data.get("environment")
        prod = env == "prod"
        dist = data.get("distribution", "k3s")
        data.setdefault("serverCount", 3 if dist == "rke2" else 2)
        # An invalid distribution is reported on its own; do not add a spurious
        # "kubernetesVersion is required" to it.
        data.setdefault("kubernetesVersion", versions.EXAMPLE_KUBERNETES_VERSION.get(dist, versions.EXAMPLE_KUBERNETES_VERSION["k3s"]))
        layer = data.get("loadBalancerLayer", "l4")
        data.setdefault("tlsSource", "generated" if layer == "l7" else "rancher")
        for key in ("dbMultiAz", "dbDeletionProtection", "dbFinalSnapshot", "protectStatefulResources"):
            data.setdefault(key, prod)
        # Prod keeps RDS restarts and failovers for its maintenance window; elsewhere an
        # edit lands when `pulumi up` says it did.
        data.setdefault("dbApplyImmediately", not prod)
        data.setdefault("etcdSnapshotS3", dist == "rke2" and env in ("staging", "prod"))
        data.setdefault("rancherBackups", env in ("staging", "prod"))
        data.setdefault("natGatewayPerZone", prod and data.get("natGateway", True) is not False
                        and data.get("nodePlacement", "private") == "private" and not data.get("vpcId"))
        hostname = data.get("hostname")
        if isinstance(hostname, str) and hostname:
            data.setdefault("apiHostname", "api." + hostname.rstrip(".").lower())
        return data

    @field_validator("distribution", mode="before")
    @classmethod
    def _distribution(cls, value: Any) -> Any:
        if isinstance(value, str) and value.lower() in ("rke", "rke1"):
            raise ValueError(
                "RKE1 reached end of life on 2025-07-31 and Rancher 2.12+ does not support "
                "it. Fix: set distribution to 'rke2', which gives the same three-node "
                "embedded-etcd layout"
            )
        return value

    @field_validator("hostname", "hosted_zone", "api_hostname")
    @classmethod
    def _dns_name(cls, value: str) -> str:
        return _hostname(value)

    @field_validator("region")
    @classmethod
    def _region(cls, value: str) -> str:
        if not re.match(r"^[a-z]{2}(-[a-z]+)+-\d$", value):
            raise ValueError("is not an AWS region. Fix: set aws:region, e.g. 'eu-west-1'")
        return value

    @field_validator("aws_account")
    @classmethod
    def _aws_account(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and not HOSTNAME_LABEL.match(value):
            raise ValueError(
                "is not an account label. Fix: name the account with lowercase letters, digits and hyphens "
                "(e.g. 'prod') or give its 12-digit id"
            )
        return value

    @field_validator("iam_permissions_boundary_arn")
    @classmethod
    def _iam_permissions_boundary_arn(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and not IAM_POLICY_ARN.match(value):
            raise ValueError(
                "is not an IAM policy ARN. Fix: give the boundary policy's ARN, "
                "e.g. arn:aws:iam::111122223333:policy/rancher-ha-workload-boundary"
            )
        return value

    @field_validator("iam_permissions_boundary")
    @classmethod
    def _iam_permissions_boundary(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and not (IAM_POLICY_ARN.match(value) or IAM_POLICY_NAME.match(value)):
            raise ValueError(
                "is neither an IAM policy name nor a customer-managed policy ARN. Fix: the boundary policy's "
                "name, e.g. rancher-ha-workload-boundary, or its ARN, "
                "e.g. arn:aws:iam::111122223333:policy/rancher-ha-workload-boundary"
            )
        return value

    @property
    def permissions_boundary(self) -> Optional[str]:
        """The boundary policy, by name or ARN, whichever key set it."""
        return self.iam_permissions_boundary or self.iam_permissions_boundary_arn

    @field_validator("rancher_version")
    @classmethod
    def _rancher_version(cls, value: str) -> str:
        versions.parse_rancher_version(value)
        return value

    @field_validator("rancher_chart_repository")
    @classmethod
    def _chart_repository(cls, value: str) -> str:
        if value not in versions.RANCHER_CHART_REPOSITORIES and not re.match(r"^https://[^\s]+$", value):
            raise ValueError(
                "is not a Rancher chart repository. Fix: use 'stable' (the default), 'latest', "
                "'prime', or the https URL of a mirror"
            )
        return value

    @field_validator("kubernetes_version")
    @classmethod
    def _kubernetes_version(cls, value: str) -> str:
        versions.parse_kubernetes_version(value)
        return value

    @field_validator("cert_manager_version")
    @classmethod
    def _cert_manager_version(cls, value: str) -> str:
        match = re.match(r"^v1\.(\d+)\.(\d+)$", value)
        if not match:
            raise ValueError("is not a cert-manager chart version. Fix: use e.g. 'v1.19.2'")
        if int(match.group(1)) < 15:
            raise ValueError(
                "is older than v1.15, which Rancher 2.14+ warns about and which lacks "
                "crds.enabled. Fix: use v1.15 or newer, e.g. 'v1.19.2'"
            )
        return value

    @field_validator("server_instance_type", "nginx_instance_type")
    @classmethod
    def _instance_type(cls, value: str) -> str:
        return validate_instance_type(value)

    @field_validator("server_root_volume_gb")
    @classmethod
    def _root_volume(cls, value: int) -> int:
        if not 30 <= value <= 16384:
            raise ValueError("must be 30-16384 GiB. Fix: K3s/RKE2 images and etcd need at least 30")
        return value

    @field_validator("admin_cidrs", mode="before")
    @classmethod
    def _admin_cidrs_present(cls, value: Any) -> Any:
        if value is None or value == []:
            raise ValueError(
                "is empty. Fix: list the networks that may reach the Kubernetes API, "
                "including the one `pulumi up` runs from, e.g. ['203.0.113.10/32']"
            )
        return value

    @field_validator("admin_cidrs", "proxy_no_proxy", "node_subnet_ids", "lb_subnet_ids", mode="before")
    @classmethod
    def _list(cls, value: Any) -> Any:
        if isinstance(value, str):
            raise ValueError("must be a list. Fix: write a YAML list, e.g. ['a', 'b']")
        return value

    @field_validator("admin_cidrs")
    @classmethod
    def _admin_cidrs(cls, value: list[str]) -> list[str]:
        for cidr in value:
            _cidr(cidr)
        return value

    @field_validator("vpc_cidr")
    @classmethod
    def _vpc_cidr(cls, value: str) -> str:
        network = _cidr(value)
        if network.version != 4 or not 16 <= network.prefixlen <= 22:
            raise ValueError("must be an IPv4 CIDR from /16 to /22. Fix: e.g. '10.0.0.0/16'")
        return value

    @field_validator("cluster_cidr", "service_cidr")
    @classmethod
    def _cluster_networks(cls, value: str) -> str:
        if _cidr(value).version != 4:
            raise ValueError("must be an IPv4 CIDR. Fix: e.g. '10.42.0.0/16'")
        return value

    @field_validator("vpc_id")
    @classmethod
    def _vpc_id(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and not VPC_ID.match(value):
            raise ValueError("is not a VPC id. Fix: use the id, e.g. 'vpc-0123456789abcdef0'")
        return value

    @field_validator("node_subnet_ids", "lb_subnet_ids")
    @classmethod
    def _subnet_ids(cls, value: list[str]) -> list[str]:
        for subnet in value:
            if not SUBNET_ID.match(subnet):
                raise ValueError(
                    f"contains '{subnet}', which is not a subnet id. Fix: use ids like "
                    "'subnet-0123456789abcdef0'"
                )
        if len(set(value)) != len(value):
            raise ValueError("lists a subnet twice. Fix: list each subnet once")
        return value

    @field_validator("snapshot_bucket_admins")
    @classmethod
    def _principal_arns(cls, value: list[str]) -> list[str]:
        return _each_matches(
            value, IAM_PRINCIPAL_ARN,
            "is not an IAM role or user ARN (aws:PrincipalArn of a session is its role's ARN, not the assumed-role "
            "session's). Fix: use e.g. 'arn:aws:iam::123456789012:role/ci-deploy'",
        )

    @field_validator("rancher_backup_readers")
    @classmethod
    def _reader_arns(cls, value: list[str]) -> list[str]:
        _each_matches(
            value, BACKUP_READER_ARN,
            "is not an IAM role or user ARN of one account (the bucket's and key's policies name that account). "
            "Fix: use the new stack's backup user path, e.g. 'arn:aws:iam::123456789012:user/rancher-ha/prod-eu/*'",
        )
        for reader in value:
            # What a pattern fixes before its first wildcard: every role or user of the account,
            # or every stack's backup user, is not one reader.
            fixed = reader.split(":", 5)[5].split("*", 1)[0]
            backup_users = "user/rancher-ha/".startswith(fixed) or fixed.startswith("user/rancher-ha/")
            if fixed in ("role/", "user/") or (backup_users and not re.match(r"user/rancher-ha/[^/]+/", fixed)):
                raise ValueError(
                    f"contains '{reader}', which admits {'every role or every user' if fixed in ('role/', 'user/') else 'the backup users of more than one stack'} "
                    "of the account. Fix: name one reader, e.g. the new stack's backup users "
                    "'arn:aws:iam::123456789012:user/rancher-ha/<new stack>/*'"
                )
        return value

    @field_validator("ssh_key_name")
    @classmethod
    def _key_name(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and not re.match(r"^[\x20-\x7e]{1,255}$", value):
            raise ValueError("is not an EC2 key pair name. Fix: 1-255 printable ASCII characters, or remove it")
        return value

    @field_validator("imds_hop_limit")
    @classmethod
    def _hop_limit(cls, value: int) -> int:
        if not 1 <= value <= 64:
            raise ValueError("must be 1-64. Fix: keep 1 so pods cannot reach instance credentials")
        return value

    @field_validator("db_instance_class")
    @classmethod
    def _db_class(cls, value: str) -> str:
        if not re.match(r"^db\.[a-z0-9]+\.[a-z0-9]+$", value):
            raise ValueError("is not an RDS instance class. Fix: e.g. 'db.t4g.medium' or 'db.m7g.large'")
        return value

    @field_validator("db_engine_version")
    @classmethod
    def _db_engine(cls, value: str) -> str:
        if not re.match(r"^8\.4(\.\d+)?$", value):
            raise ValueError(
                "is not MySQL 8.4. K3s is validated with RDS MySQL 8.4; 5.7 is in paid "
                "extended support and 8.0 entered it on 2026-08-01. Fix: use '8.4'"
            )
        return value

    @field_validator("db_allocated_storage_gb")
    @classmethod
    def _db_storage(cls, value: int) -> int:
        if not 20 <= value <= 65536:
            raise ValueError("must be 20-65536 GiB. Fix: RDS gp3 storage starts at 20")
        return value

    @field_validator("db_backup_retention_days")
    @classmethod
    def _db_backups(cls, value: int) -> int:
        if not 1 <= value <= 35:
            raise ValueError(
                "must be 1-35; 0 would turn automated backups off. Fix: keep 7 or more "
                "for the K3s datastore, which holds the whole cluster state"
            )
        return value

    @field_validator("nginx_worker_processes")
    @classmethod
    def _worker_processes(cls, value: str) -> str:
        if value != "auto" and not (value.isdigit() and 1 <= int(value) <= 64):
            raise ValueError("must be 'auto' or 1-64. Fix: keep 'auto' (one per vCPU)")
        return value

    @field_validator("nginx_worker_connections")
    @classmethod
    def _worker_connections(cls, value: int) -> int:
        if not 512 <= value <= 65536:
            raise ValueError("must be 512-65536. Fix: the Rancher guides use 8192")
        return value

    @field_validator("nginx_proxy_timeout_seconds")
    @classmethod
    def _proxy_timeout(cls, value: int) -> int:
        if not 900 <= value <= 86400:
            raise ValueError(
                "must be 900-86400 s: Rancher's WebSockets and watches idle longer than "
                "NGINX's 60 s default. Fix: keep 1800 (Rancher's suggestion)"
            )
        return value

    @field_validator("api_ready_timeout_seconds")
    @classmethod
    def _api_timeout(cls, value: int) -> int:
        if not 60 <= value <= 7200:
            raise ValueError("must be 60-7200 s. Fix: first boots take 5-15 min; keep 1200")
        return value

    @field_validator("etcd_snapshot_schedule")
    @classmethod
    def _cron(cls, value: str) -> str:
        fields = value.split()
        if len(fields) != 5 or not all(CRON_FIELD.match(field) for field in fields):
            raise ValueError("is not a 5-field cron expression. Fix: e.g. '0 */6 * * *'")
        return value

    @field_validator("etcd_snapshot_retention")
    @classmethod
    def _retention(cls, value: int) -> int:
        if not 1 <= value <= 1000:
            raise ValueError("must be 1-1000. Fix: e.g. 28 (a week at four a day)")
        return value

    @field_validator("rancher_backup_schedule")
    @classmethod
    def _backup_schedule(cls, value: str) -> str:
        fields = value.split()
        if value in BACKUP_DESCRIPTORS or (len(fields) == 5 and all(CRON_FIELD.match(field) for field in fields)):
            return value
        raise ValueError("is not a 5-field cron expression or @hourly/@daily/@midnight/@weekly. Fix: e.g. '0 * * * *'")

    @field_validator("rancher_backup_retention")
    @classmethod
    def _backup_retention(cls, value: int) -> int:
        if not 1 <= value <= 1000:
            raise ValueError("must be 1-1000. Fix: e.g. 168 (a week of hourly backups)")
        return value

    @field_validator("rancher_backup_chart_version")
    @classmethod
    def _backup_chart(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and not re.match(r"^\d+\.\d+\.\d+\+up\d+\.\d+\.\d+$", value):
            raise ValueError("is not a rancher-backup chart version. Fix: e.g. '110.0.0+up11.0.0'")
        return value

    @field_validator("rancher_backup_key_max_age_days")
    @classmethod
    def _key_age(cls, value: int) -> int:
        if not 14 <= value <= 365:
            raise ValueError("must be 14-365 days. Fix: keep 90 and run `pulumi up` at least monthly")
        return value

    @field_validator("restore_from_backup")
    @classmethod
    def _backup_file(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and (not re.match(r"^[^/\s]+\.tar\.gz(\.enc)?$", value)):
            raise ValueError(
                "is not a rancher-backup file name. Fix: the file name only (no folder), as `aws s3 ls "
                "s3://<bucket>/<folder>/` lists it, ending in .tar.gz or .tar.gz.enc"
            )
        return value

    @field_validator("restore_from_folder")
    @classmethod
    def _folder(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and (value.startswith("/") or value.endswith("/")):
            raise ValueError("must not start or end with '/'. Fix: e.g. 'rancher-backups/prod'")
        return value

    @field_validator("proxy_http", "proxy_https")
    @classmethod
    def _proxy_url(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and not PROXY_URL.match(value):
            raise ValueError(
                "is not a proxy URL. Fix: use http://host:port (credentials are not "
                "supported here: they would land in node files)"
            )
        return value

    @field_validator("proxy_no_proxy")
    @classmethod
    def _no_proxy(cls, value: list[str]) -> list[str]:
        for entry in value:
            if not entry or any(char in entry for char in " ,"):
                raise ValueError(
                    f"contains '{entry}'. Fix: one host, domain or CIDR per list item, "
                    "without spaces or commas"
                )
        return value

    @field_validator("lets_encrypt_email")
    @classmethod
    def _email(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and not re.match(r"^[^@\s]+@[^@\s]+\.[^@\s]+$", value):
            raise ValueError("is not an e-mail address. Fix: e.g. 'ops@example.com'")
        return value

    @field_validator("tls_certificate", "tls_ca_certificate")
    @classmethod
    def _pem_certificate(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and "-----BEGIN CERTIFICATE-----" not in value:
            raise ValueError("is not a PEM certificate. Fix: paste the PEM text including BEGIN/END lines")
        return value

    @field_validator("etcd_restore_snapshot")
    @classmethod
    def _etcd_snapshot_name(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and not ETCD_SNAPSHOT_NAME.match(value):
            raise ValueError(
                "is not a snapshot file name. Fix: give the name as `rke2 etcd-snapshot list` or the S3 "
                "console shows it in this stack's folder, without the folder (e.g. "
                "'etcd-snapshot-ip-10-0-1-10-1733550000'); a snapshot of another stack cannot be "
                "restored here (docs/disaster-recovery.md#whole-cluster-lost)"
            )
        return value

    @field_validator("db_restore_from_snapshot")
    @classmethod
    def _rds_snapshot(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and not RDS_SNAPSHOT.match(value):
            raise ValueError(
                "is not an RDS DB snapshot identifier or ARN. Fix: copy it from `aws rds "
                "describe-db-snapshots` (e.g. 'rds:datastore-mysql-1a2b3c4-2026-12-01-03-10' or 'my-snapshot')"
            )
        return value

    @field_validator("db_restore_source_instance")
    @classmethod
    def _rds_instance(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and not RDS_INSTANCE.match(value):
            raise ValueError(
                "is not an RDS instance identifier. Fix: use the identifier `aws rds describe-db-instances` "
                "shows for this stack's datastore (lowercase letters, digits, hyphens)"
            )
        return value

    @field_validator("db_restore_time")
    @classmethod
    def _restore_time(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and value != "latest" and not UTC_TIME.match(value):
            raise ValueError(
                "is neither 'latest' nor a UTC time. Fix: e.g. '2026-12-07T05:40:00Z' (within the "
                "backup retention), or 'latest' for the latest restorable time (about 5 minutes ago)"
            )
        return value

    @field_validator("tls_private_key")
    @classmethod
    def _pem_key(cls, value: Optional[SecretStr]) -> Optional[SecretStr]:
        if value is not None and not re.search(r"-----BEGIN [A-Z ]*PRIVATE KEY-----", value.get_secret_value()):
            raise ValueError(
                "is not a PEM private key. Fix: `pulumi config set --secret tlsPrivateKey < key.pem`"
            )
        return value

    # --------------------------------------------------------------------------------
    @model_validator(mode="after")
    def _combinations(self, info: ValidationInfo) -> "Settings":
        if info.context and info.context.get("fields_only"):
            return self
        problems = self.combination_problems()
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def combination_problems(self) -> list[str]:
        """Every combination that cannot work, one `<key> = <value>: ... Fix: ...` line each.

        Also runs on a partial view (`with_unknown`) of a stack whose other settings
        failed on their own: each check is guarded, and one that reads an invalid setting
        is skipped, so the rest are still reported in the same run.
        """
        problems: list[str] = []
        guard = _SkipWhereUnknown(any(value is UNKNOWN for value in self.__dict__.values()))
        # Values several checks read: None where the guard skipped computing them (a
        # partial view), and every check that reads one is then skipped too.
        hostname_in_zone: Optional[bool] = None
        release: Optional[versions.KubernetesRelease] = None
        supported: Optional[tuple[int, int]] = None
        memory: Optional[float] = None
        open_to_world: Optional[list[str]] = None
        vpc = pods = services = None
        proxied: Optional[bool] = None
        creates_vpc: Optional[bool] = None
        internal: Optional[bool] = None
        restoring: Optional[bool] = None
        encrypted: Optional[bool] = None

        def problem(key: str, value: Any, message: str) -> None:
            problems.append(f"rancher-ha:{key} = {value!r}: {message}")

        with guard:
            if self.iam_permissions_boundary and self.iam_permissions_boundary_arn:
                problem("iamPermissionsBoundaryArn", self.iam_permissions_boundary_arn,
                        "is the earlier name of iamPermissionsBoundary, which is set too. "
                        "Fix: pulumi config rm iamPermissionsBoundaryArn")
        with guard:
            hostname_in_zone = self.hostname.endswith("." + self.hosted_zone)
        # (A hostname outside the zone is reported below; its derived API name would only repeat it.)
        with guard:
            if hostname_in_zone and (not self.api_hostname.endswith("." + self.hosted_zone) or self.api_hostname == self.hostname):
                problem(
                    "apiHostname",
                    self.api_hostname,
                    f"must be a name in the hosted zone '{self.hosted_zone}' other than the Rancher "
                    f"hostname. Fix: remove it to get 'api.{self.hostname}', or pick another name in the zone",
                )
        with guard:
            if not self.hostname.endswith("." + self.hosted_zone):
                problem(
                    "hostname",
                    self.hostname,
                    f"is not inside the hosted zone '{self.hosted_zone}'. Fix: use a name "
                    f"ending in '.{self.hosted_zone}' or set hostedZone to the zone that holds it",
                )

        with guard:
            if self.distribution == "k3s" and not 2 <= self.server_count <= 7:
                problem(
                    "serverCount",
                    self.server_count,
                    "k3s HA with an external datastore needs at least 2 servers (and at most "
                    "7 here). Fix: set serverCount to 2 or more",
                )
        with guard:
            if self.distribution == "rke2" and self.server_count not in (3, 5, 7):
                problem(
                    "serverCount",
                    self.server_count,
                    "rke2 runs etcd on every server, and etcd needs a majority (quorum) to "
                    "work: an even count tolerates no more failures than the odd count below "
                    "it, and 1 tolerates none. Fix: use 3, 5 or 7",
                )

        with guard:
            release = versions.parse_kubernetes_version(self.kubernetes_version)
        with guard:
            if release is not None and release.distribution != self.distribution:
                problem(
                    "kubernetesVersion",
                    self.kubernetes_version,
                    f"is a {release.distribution} release but distribution is "
                    f"{self.distribution}. Fix: use e.g. "
                    f"'{versions.EXAMPLE_KUBERNETES_VERSION[self.distribution]}'",
                )
        with guard:
            supported = versions.supported_kubernetes_range(self.rancher_version)
        with guard:
            if release is not None and supported is not None and not supported[0] <= release.minor <= supported[1]:
                low, high = supported
                problem(
                    "kubernetesVersion",
                    self.kubernetes_version,
                    f"Kubernetes 1.{release.minor} is outside Rancher {self.rancher_version}'s "
                    f"supported range 1.{low}-1.{high}. Fix: choose a 1.{low}-1.{high} release "
                    f"or a Rancher version that supports 1.{release.minor}",
                )

        with guard:
            if self.distribution == "k3s" and self.ingress_controller_choice not in (None, "traefik"):
                problem(
                    "ingressController",
                    self.ingress_controller_choice,
                    "K3s ships Traefik as its only packaged ingress controller. Fix: remove it, or set traefik",
                )

        with guard:
            memory = memory_gib(self.server_instance_type)
        with guard:
            if memory is not None and memory < RANCHER_MIN_MEMORY_GIB:
                problem(
                    "serverInstanceType",
                    self.server_instance_type,
                    f"has {memory:g} GiB memory; Rancher needs at least "
                    f"{RANCHER_MIN_MEMORY_GIB} GiB per server. Fix: use e.g. 't3.large' or 'm6i.xlarge'",
                )

        with guard:
            open_to_world = [cidr for cidr in self.admin_cidrs if _cidr(cidr).prefixlen == 0]
        with guard:
            if open_to_world and not self.allow_api_from_anywhere:
                problem(
                    "adminCidrs",
                    self.admin_cidrs,
                    "opens the Kubernetes API to the whole internet. Fix: list your networks, "
                    "or set allowApiFromAnywhere: true if you really mean it",
                )

        with guard:
            if self.load_balancer_layer == "l7" and self.load_balancer_type == "nlb":
                problem(
                    "loadBalancerLayer",
                    "l7",
                    "an NLB is layer 4 only, and Rancher supports it only in TCP mode. Fix: "
                    "use loadBalancerType: nginx for l7, or loadBalancerLayer: l4 with the NLB",
                )
        with guard:
            if self.load_balancer_layer == "l7" and self.tls_source in ("rancher", "letsEncrypt"):
                problem(
                    "tlsSource",
                    self.tls_source,
                    "with l7 the load balancer terminates TLS (Rancher runs with tls=external), "
                    "so the cluster cannot issue Rancher's certificate. Fix: use 'generated' or "
                    "'provided'",
                )
        with guard:
            if self.tls_source == "provided" and (self.tls_certificate is None or self.tls_private_key is None):
                problem(
                    "tlsSource",
                    "provided",
                    "needs tlsCertificate and tlsPrivateKey. Fix: `pulumi config set "
                    "tlsCertificate < cert.pem` and `pulumi config set --secret tlsPrivateKey < key.pem`",
                )
        with guard:
            if self.tls_source != "provided" and (self.tls_certificate or self.tls_private_key or self.tls_ca_certificate):
                problem(
                    "tlsSource",
                    self.tls_source,
                    "tlsCertificate/tlsPrivateKey/tlsCaCertificate are set but would be ignored. "
                    "Fix: set tlsSource: provided, or remove them",
                )
        with guard:
            if self.tls_source == "letsEncrypt" and not self.lets_encrypt_email:
                problem(
                    "letsEncryptEmail",
                    None,
                    "is required with tlsSource: letsEncrypt. Fix: set an ACME contact e-mail",
                )

        with guard:
            if self.vpc_id is None and (self.node_subnet_ids or self.lb_subnet_ids):
                problem(
                    "nodeSubnetIds",
                    self.node_subnet_ids,
                    "subnets are given without vpcId. Fix: set vpcId to their VPC, or remove them to create a VPC",
                )
        with guard:
            if self.vpc_id is not None:
                for key, subnets in (("nodeSubnetIds", self.node_subnet_ids), ("lbSubnetIds", self.lb_subnet_ids)):
                    if len(subnets) < 2:
                        problem(
                            key,
                            subnets,
                            "an existing VPC needs at least 2 subnets in different zones here. "
                            "Fix: list 2-3 subnets, one per availability zone",
                        )

        with guard:
            vpc = _cidr(self.vpc_cidr)
        with guard:
            pods, services = _cidr(self.cluster_cidr), _cidr(self.service_cidr)
        # (An existing VPC's CIDR is known only from AWS: stages.edge.check_cluster_networks.)
        with guard:
            for key, network in (("clusterCidr", pods), ("serviceCidr", services)):
                if self.vpc_id is None and vpc is not None and network is not None and network.overlaps(vpc):
                    problem(
                        key,
                        str(network),
                        f"overlaps the VPC {vpc}, so pod or service traffic would be misrouted. "
                        "Fix: pick a range outside the VPC, e.g. 10.42.0.0/16 with VPC 10.0.0.0/16",
                    )
        with guard:
            if pods is not None and services is not None and pods.overlaps(services):
                problem("serviceCidr", str(services), "overlaps clusterCidr. Fix: use separate ranges")

        with guard:
            if self.distribution == "rke2" and self.vpc_id is not None and self.node_subnet_ids:
                # Even with every subnet in a zone of its own, too few subnets lose quorum with
                # one zone; which zones they really are in only AWS knows (stages.edge.check_zone_quorum).
                risk = placement.quorum_loss_on_zone_failure(self.server_count, self.node_subnet_ids)
                if risk is not None and not self.allow_quorum_loss_on_zone_failure:
                    problem(
                        "nodeSubnetIds",
                        self.node_subnet_ids,
                        placement.explain(
                            placement.ZoneRisk("one zone", risk.servers_in_zone, risk.server_count),
                            f"{len(self.node_subnet_ids)} node subnets, so at most {len(self.node_subnet_ids)} availability zones",
                        ),
                    )
        with guard:
            if self.allow_quorum_loss_on_zone_failure and self.distribution != "rke2":
                problem(
                    "allowQuorumLossOnZoneFailure",
                    True,
                    "applies only to rke2 (etcd on every server); k3s here keeps its state in RDS. Fix: remove it",
                )

        with guard:
            proxied = bool(self.proxy_http or self.proxy_https)
        with guard:
            if self.proxy_no_proxy and proxied is False:
                problem(
                    "proxyNoProxy",
                    self.proxy_no_proxy,
                    "is set but no proxy URL is. Fix: set proxyHttp and/or proxyHttps, or remove proxyNoProxy",
                )
        with guard:
            creates_vpc = self.vpc_id is None
        with guard:
            if creates_vpc and self.node_placement == "private" and not self.nat_gateway:
                problem(
                    "natGateway",
                    False,
                    "a VPC this stack creates has no other way out than its NAT gateway: without it "
                    "the private nodes cannot reach a proxy, SSM, the installers or images (and a "
                    "hand-added route would be outside the stack). Fix: keep natGateway: true, or "
                    "use an existing VPC where your proxy is reachable (vpcId, nodeSubnetIds, "
                    "lbSubnetIds, proxyHttps)",
                )
        with guard:
            if creates_vpc is not None and self.nat_gateway_per_zone and (
                not creates_vpc or self.node_placement != "private" or not self.nat_gateway
            ):
                problem(
                    "natGatewayPerZone",
                    True,
                    "applies only to a VPC this stack creates, with private nodes and natGateway: true. "
                    "Fix: remove it",
                )
        with guard:
            internal = self.load_balancer_scheme == "internal"
        with guard:
            if internal is False and all(_only_reachable_privately(cidr) for cidr in self.admin_cidrs):
                problem(
                    "adminCidrs",
                    self.admin_cidrs,
                    "lists only private networks, which can never reach an internet-facing load "
                    "balancer (their traffic arrives from NAT or public addresses), so `pulumi up` "
                    "could not reach the API. Fix: set loadBalancerScheme: internal, or list the "
                    "public addresses your admins and CI leave from",
                )
        with guard:
            if internal and self.load_balancer_type == "nginx":
                problem(
                    "loadBalancerScheme",
                    "internal",
                    "the NGINX load balancer's stable address is an Elastic IP, which is public. Fix: use "
                    "loadBalancerType: nlb for an internal load balancer",
                )
        with guard:
            if self.tls_source == "letsEncrypt" and internal is not None and (internal or self.hosted_zone_private):
                problem(
                    "tlsSource",
                    "letsEncrypt",
                    "Let's Encrypt's HTTP-01 challenge must reach Rancher from the internet through a "
                    "public DNS name. Fix: use tlsSource: provided (your CA) or rancher, or a public, "
                    "internet-facing setup",
                )
        with guard:
            if self.node_placement == "public" and not self.nat_gateway:
                problem(
                    "natGateway",
                    False,
                    "has no effect with public nodes. Fix: remove it, or use nodePlacement: private",
                )

        with guard:
            if self.rancher_backups and self.rancher_backup_chart_version is None and versions.default_backup_chart_version(self.rancher_version) is None:
                problem(
                    "rancherBackupChartVersion",
                    None,
                    f"no rancher-backup chart is known here for Rancher {self.rancher_version}. Fix: set the "
                    "chart version of the operator line of that Rancher minor (charts.rancher.io, "
                    "annotation catalog.cattle.io/rancher-version), or rancherBackups: false",
                )
        with guard:
            chart = self.backup_chart_version
            declared = versions.RANCHER_BACKUP_KUBERNETES.get(chart or "")
            if (self.rancher_backups and self.rancher_backup_chart_version is None and declared and release is not None
                    and not declared[0] <= release.minor <= declared[1]):
                low, high = declared
                minor = release.minor
                problem(
                    "rancherBackupChartVersion",
                    None,
                    f"the rancher-backup chart pinned for Rancher {self.rancher_version} ({chart}) declares "
                    f"Kubernetes 1.{low}-1.{high} (catalog.cattle.io/kube-version), not 1.{minor}. Fix: set "
                    f"rancherBackupChartVersion to a chart of that Rancher minor's operator line that declares "
                    f"1.{minor} (`helm search repo rancher-charts/rancher-backup --versions`), choose Kubernetes "
                    f"1.{high} or older, or rancherBackups: false",
                )
        with guard:
            restoring = self.restore_from_backup is not None
        with guard:
            if restoring and not self.rancher_backups:
                problem("restoreFromBackup", self.restore_from_backup,
                        "a restore needs the rancher-backup operator. Fix: set rancherBackups: true")
        with guard:
            for key, value in (("restoreFromBucket", self.restore_from_bucket), ("restoreFromFolder", self.restore_from_folder),
                               ("restoreFromRegion", self.restore_from_region)):
                if value is not None and restoring is False:
                    problem(key, value, "has no effect without restoreFromBackup. Fix: remove it, or set restoreFromBackup")
        with guard:
            if self.restore_from_bucket is not None and self.restore_from_folder is None:
                problem("restoreFromBucket", self.restore_from_bucket,
                        "needs restoreFromFolder. Fix: set it to the old stack's rancherBackupFolder output")
        with guard:
            if self.rancher_backup_readers and not self.rancher_backups:
                problem("rancherBackupReaders", self.rancher_backup_readers,
                        "has no effect without rancherBackups (there are no Rancher backups to read). Fix: remove it, "
                        "or set rancherBackups: true")
        with guard:
            encrypted = self.restore_from_backup is not None and self.restore_from_backup.endswith(".enc")
        with guard:
            if encrypted and self.restore_encryption_key is None:
                problem("restoreFromBackup", self.restore_from_backup,
                        "is encrypted (.enc). Fix: `pulumi stack output --show-secrets rancherBackupEncryptionKey` on the "
                        "old stack, then `pulumi config set --secret restoreEncryptionKey <it>`")
        with guard:
            if self.restore_encryption_key is not None and encrypted is False:
                problem("restoreEncryptionKey", "[secret]",
                        "is only used for an encrypted (.enc) restoreFromBackup. Fix: remove it")
        with guard:
            if self.restore_encryption_key is not None and not _is_secretbox_key(self.restore_encryption_key.get_secret_value()):
                problem("restoreEncryptionKey", "[secret]",
                        "is not the base64 of 32 bytes. Fix: copy the old stack's rancherBackupEncryptionKey output as is")

        with guard:
            if self.etcd_snapshot_s3 and self.distribution == "k3s":
                problem(
                    "etcdSnapshotS3",
                    True,
                    "k3s here keeps its state in RDS, which has its own automated backups; there is "
                    "no etcd to snapshot. Fix: remove etcdSnapshotS3, or use distribution: rke2",
                )

        with guard:
            if self.environment == "prod" and (self.etcd_snapshot_s3 or self.rancher_backups) and not self.snapshot_bucket_admins:
                problem(
                    "snapshotBucketAdmins",
                    self.snapshot_bucket_admins,
                    "is required in prod: the backup bucket's policy denies everyone but the nodes and these "
                    "administrators, and without them it names whoever ran `pulumi up` last, locking out every "
                    "other deployer (CI or a person). Fix: list every role that deploys prod, e.g. "
                    "'arn:aws:iam::123456789012:role/github-ci/rancher-ha-deploy-prod' and your break-glass role",
                )

        with guard:
            if self.etcd_restore_snapshot is not None and self.distribution != "rke2":
                problem(
                    "etcdRestoreSnapshot",
                    self.etcd_restore_snapshot,
                    "only rke2 keeps its state in etcd here; k3s keeps it in RDS. Fix: remove it; to restore "
                    "a k3s stack's datastore use dbRestoreFromSnapshot or dbRestoreSourceInstance",
                )
        with guard:
            if self.etcd_restore_snapshot is not None and self.distribution == "rke2" and not self.etcd_snapshot_s3:
                problem(
                    "etcdRestoreSnapshot",
                    self.etcd_restore_snapshot,
                    "a lost cluster's local snapshots were on its lost servers' disks; the new first server "
                    "can fetch a snapshot only from this stack's S3 bucket. Fix: set etcdSnapshotS3: true "
                    "(and restore a snapshot it holds)",
                )
        with guard:
            restores_db = self.db_restore_from_snapshot is not None or self.db_restore_source_instance is not None
            if (restores_db or self.db_restore_time is not None) and self.distribution != "k3s":
                problem(
                    "dbRestoreFromSnapshot" if self.db_restore_from_snapshot else "dbRestoreSourceInstance",
                    self.db_restore_from_snapshot or self.db_restore_source_instance or self.db_restore_time,
                    "rke2 has no RDS datastore (its state is in etcd). Fix: remove it; to restore an rke2 "
                    "cluster use etcdRestoreSnapshot",
                )
        with guard:
            if self.db_restore_from_snapshot is not None and self.db_restore_source_instance is not None:
                problem(
                    "dbRestoreFromSnapshot",
                    self.db_restore_from_snapshot,
                    "and dbRestoreSourceInstance are both set; RDS restores one or the other. Fix: keep one",
                )
        with guard:
            if (self.db_restore_source_instance is None) != (self.db_restore_time is None):
                problem(
                    "dbRestoreTime" if self.db_restore_source_instance is None else "dbRestoreSourceInstance",
                    self.db_restore_time if self.db_restore_source_instance is None else self.db_restore_source_instance,
                    "a point-in-time restore needs both the source instance and the time. Fix: set "
                    "dbRestoreSourceInstance and dbRestoreTime ('latest' or a UTC time), or neither",
                )

        with guard:
            if self.nginx_worker_rlimit_nofile < 2 * self.nginx_worker_connections or self.nginx_worker_rlimit_nofile > 1048576:
                problem(
                    "nginxWorkerRlimitNofile",
                    self.nginx_worker_rlimit_nofile,
                    "a proxied connection holds two descriptors, so this must be at least "
                    f"2 x nginxWorkerConnections ({2 * self.nginx_worker_connections}) and at most 1048576. "
                    "Fix: raise it (the guides use 40000 with 8192 connections)",
                )

        return problems

    def with_unknown(self, aliases: set[str]) -> "Settings":
        """A copy whose settings named in `aliases` are UNKNOWN (for `combination_problems`)."""
        names = {name for name, info in type(self).model_fields.items() if info.alias in aliases}
        return self.model_copy(update={name: UNKNOWN for name in names})

    # --------------------------------------------------------------------------------
    @property
    def internal(self) -> bool:
        return self.load_balancer_scheme == "internal"

    @property
    def rancher_chart_repository_url(self) -> str:
        return versions.RANCHER_CHART_REPOSITORIES.get(self.rancher_chart_repository, self.rancher_chart_repository)

    @property
    def rancher_replicas(self) -> int:
        # Rancher's own guidance: 3 replicas; more only add leader-election churn.
        return min(3, self.server_count)

    @property
    def kubernetes_release(self) -> versions.KubernetesRelease:
        return versions.parse_kubernetes_version(self.kubernetes_version)

    @property
    def proxied(self) -> bool:
        return bool(self.proxy_http or self.proxy_https)

    @property
    def uses_cert_manager(self) -> bool:
        return self.tls_source in ("rancher", "letsEncrypt")

    @property
    def ingress_controller(self) -> str:
        """The ingressController setting, else the default of this distribution and minor
        (which only a new stack may take: the identity lock keeps a running cluster's)."""
        if self.ingress_controller_choice is not None:
            return self.ingress_controller_choice
        if self.distribution == "k3s":
            return "traefik"
        return versions.rke2_ingress_controller(self.kubernetes_release.minor)

    @property
    def private_ca(self) -> bool:
        """True when the served certificate chains to a CA agents must be given."""
        return self.tls_source == "generated" or (
            self.tls_source == "provided" and self.tls_ca_certificate is not None
        )

    @property
    def agent_tls_mode(self) -> str:
        # strict needs agents to be told the CA (Rancher's own CA, or tls-ca);
        # a publicly trusted cert is verified against the system store instead.
        if self.tls_source == "letsEncrypt" or (self.tls_source == "provided" and not self.private_ca):
            return "system-store"
        return "strict"

    @property
    def backup_chart_version(self) -> Optional[str]:
        return self.rancher_backup_chart_version or versions.default_backup_chart_version(self.rancher_version)

    @property
    def datastore_source(self) -> str:
        """What the K3s datastore was created from; changing it replaces the RDS instance
        (snapshot_identifier and restore_to_point_in_time are force-new)."""
        if self.db_restore_from_snapshot:
            return f"snapshot {self.db_restore_from_snapshot}"
        if self.db_restore_source_instance:
            return f"point in time {self.db_restore_time} of {self.db_restore_source_instance}"
        return "new"

    @property
    def rancher_url(self) -> str:
        return f"https://{self.hostname}"
