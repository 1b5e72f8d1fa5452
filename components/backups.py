"""Rancher's own backups (rancher-backup operator), the backup before every Rancher chart
upgrade, and the restore that moves Rancher into a new stack.

- The operator: charts `rancher-backup-crd` and `rancher-backup` from Rancher's chart
  repository, the line that goes with the Rancher minor (2.14 -> operator v10, 2.15 -> v11),
  in `cattle-resources-system`, with the stack's bucket as default storage location.
- A scheduled `Backup` of `rancher-resource-set-full` (Rancher's objects AND their
  secrets) encrypted with an EncryptionConfiguration whose key the stack keeps.
- A one-time `Backup` named after the Rancher version being installed
  (`rancher-ha-before-2-15-0`): a new version is a new object, and the Rancher release
  waits until it reports `Completed` (ObjectReady) before Helm upgrades anything.
- With `restoreFromBackup`: a `Restore` (prune: false) that the Rancher release waits for,
  as in Rancher's "Migrating Rancher to a New Cluster".

S3 credentials: an IAM user allowed only the stack's backup prefix, whose access key is
replaced (create-before-delete) every half `rancherBackupKeyMaxAgeDays` by the first
`pulumi up` in the new window (components/renewal.py); the Secret the operator reads is
updated in the same `up`, before the old key is deleted. (Pods cannot use the node role:
the IMDS hop limit is 1 on purpose.)

Every name the operator or a restore could collide on carries the stack's label: a
restore writes the OLD stack's secrets in cattle-* namespaces back into the cluster, and
must not overwrite this stack's credentials or encryption key.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Mapping, NotRequired, Optional, Sequence, TypedDict

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
import pulumi_random as random

from .api_gate import ApiConnection, ObjectReady
from .instance_role import PolicyDocument, Statement, boundary_policy_arn
from .naming import PROJECT, child, stack_label, stack_name, tags
from .rancher import pinned_release
from .renewal import renewal_window

NAMESPACE = "cattle-resources-system"  # the chart's catalog.cattle.io/namespace
CHART_REPOSITORY = "https://charts.rancher.io"
API_VERSION = "resources.cattle.io/v1"
# The resource set with secrets (files/default/sensitive-resourceset-contents): right
# only because the backup is encrypted. The basic set leaves out every Secret, so a
# restore would bring back no credentials, tokens or cloud credentials.
RESOURCE_SET = "rancher-resource-set-full"
ENCRYPTION_CONFIG_KEY = "encryption-provider-config.yaml"  # pkg/util/encryptionconfig

# How long `pulumi up` waits for a backup or a restore to report Completed.
BACKUP_TIMEOUT_SECONDS = 1200
RESTORE_TIMEOUT_SECONDS = 2400


def operator_tag(chart_version: str) -> Optional[str]:
    """The operator tag a chart version packages ('110.0.0+up11.0.0' -> 'v11.0.0')."""
    return "v" + chart_version.split("+up", 1)[1] if "+up" in chart_version else None


def s3_endpoint(region: str) -> str:
    # The chart requires an endpoint whenever s3.enabled (templates/s3-secret.yaml).
    return f"s3.{region}.amazonaws.com"


def credentials_secret_name() -> str:
    return f"rancher-ha-{stack_label(30)}-backup-s3"


def encryption_secret_name() -> str:
    return f"rancher-ha-{stack_label(30)}-backup-encryption"


def restore_encryption_secret_name() -> str:
    return f"rancher-ha-{stack_label(30)}-restore-encryption"


def scheduled_backup_name() -> str:
    return f"rancher-ha-{stack_label(30)}"


def pre_upgrade_backup_name(rancher_version: str) -> str:
    """One object per Rancher version installed: a new version makes a new backup."""
    return "rancher-ha-before-" + rancher_version.replace(".", "-")


def user_path(stack: str) -> str:
    """The backup user's IAM path, one per stack: its ARN is known before the user exists
    (`arn:<partition>:iam::<account>:user/rancher-ha/<stack>/*`), so an old stack can admit
    a new stack's user (rancherBackupReaders) before the new stack's first `up` creates it
    and restores with it in that same `up`. A path changes in place (iam:UpdateUser)."""
    return f"/{PROJECT}/{stack}/"


def restore_name(backup_file: str) -> str:
    # The file name holds upper-case letters (a timestamp); object names may not.
    return "rancher-ha-restore-" + hashlib.sha256(backup_file.encode()).hexdigest()[:12]


class S3ObjectStore(TypedDict):
    bucketName: pulumi.Input[str]
    folder: str
    region: str
    endpoint: str
    credentialSecretName: NotRequired[str]
    credentialSecretNamespace: NotRequired[str]


@dataclass(frozen=True)
class S3Location:
    bucket: pulumi.Input[str]
    folder: str
    region: str

    def spec(self, credentials_secret: Optional[str]) -> S3ObjectStore:
        """storageLocation.s3 of a Backup/Restore (S3ObjectStore in types)."""
        location: S3ObjectStore = {"bucketName": self.bucket, "folder": self.folder, "region": self.region,
                                   "endpoint": s3_endpoint(self.region)}
        if credentials_secret:
            location["credentialSecretName"] = credentials_secret
            location["credentialSecretNamespace"] = NAMESPACE
        return location


def chart_values(location: S3Location, proxy: Optional[str], no_proxy: Sequence[str]) -> dict[str, object]:
    """Values of the rancher-backup chart: the stack's bucket as default storage location."""
    s3 = location.spec(credentials_secret_name())
    values: dict[str, object] = {"s3": {"enabled": True, **s3}}
    if proxy:
        values["proxy"] = proxy
        values["noProxy"] = ",".join(no_proxy)
    return values


def encryption_configuration(key_base64: str) -> str:
    """A Kubernetes EncryptionConfiguration (apiserver.config.k8s.io/v1) the operator loads
    with k8s.io/apiserver's LoadEncryptionConfig: secretbox (XSalsa20-Poly1305, 32-byte
    key) over every resource in the backup."""
    import yaml

    return yaml.safe_dump(
        {
            "apiVersion": "apiserver.config.k8s.io/v1",
            "kind": "EncryptionConfiguration",
            "resources": [{"resources": ["*.*"], "providers": [{"secretbox": {"keys": [{"name": "key1", "secret": key_base64}]}}]}],
        },
        sort_keys=False,
    )


class ObjectName(TypedDict):
    name: str


class BackupSpec(TypedDict):
    resourceSetName: str
    encryptionConfigSecretName: str
    schedule: NotRequired[str]
    retentionCount: NotRequired[Optional[int]]


class BackupObject(TypedDict):
    apiVersion: str
    kind: str
    metadata: ObjectName
    spec: BackupSpec


class RestoreSpec(TypedDict):
    backupFilename: str
    prune: bool
    storageLocation: NotRequired[dict[str, S3ObjectStore]]
    encryptionConfigSecretName: NotRequired[str]


class RestoreObject(TypedDict):
    apiVersion: str
    kind: str
    metadata: ObjectName
    spec: RestoreSpec


def backup_object(name: str, schedule: Optional[str] = None, retention: Optional[int] = None) -> BackupObject:
    spec: BackupSpec = {"resourceSetName": RESOURCE_SET, "encryptionConfigSecretName": encryption_secret_name()}
    if schedule:
        spec["schedule"] = schedule
        spec["retentionCount"] = retention
    return {"apiVersion": API_VERSION, "kind": "Backup", "metadata": {"name": name}, "spec": spec}


def restore_object(backup_file: str, location: Optional[S3ObjectStore], encrypted: bool) -> RestoreObject:
    # prune: false, as the migration guide says: nothing in the new cluster is deleted.
    spec: RestoreSpec = {"backupFilename": backup_file, "prune": False}
    if location is not None:
        spec["storageLocation"] = {"s3": location}
    if encrypted:
        spec["encryptionConfigSecretName"] = restore_encryption_secret_name()
    return {"apiVersion": API_VERSION, "kind": "Restore", "metadata": {"name": restore_name(backup_file)}, "spec": spec}


def backup_user_policy(bucket_arn: str, folder: str, read_from: Sequence[tuple[str, str]] = (),
                       source_region: str = "") -> PolicyDocument:
    """The backup user's policy: its own folder only, plus read of a restore source, and
    kms:Decrypt through S3 of that source's objects (an old stack's bucket is SSE-KMS with
    a key of its own, whose policy admits the readers by their account: the user's own
    policy must allow it too, in the same account as in another).

    backup-restore-operator's S3 client (pkg/objectstore/s3minio.go, backup/retention.go):
    BucketExists (HeadBucket = s3:ListBucket with no prefix), FPutObject (s3:PutObject),
    ListObjects with the folder as prefix (s3:ListBucket), RemoveObject for retention
    (s3:DeleteObject), FGetObject/StatObject on restore (s3:GetObject).
    """
    statements: list[Statement] = [
        # HeadBucket carries no s3:prefix: an unconditioned ListBucket on the one bucket.
        {"Sid": "Bucket", "Effect": "Allow", "Action": ["s3:ListBucket", "s3:GetBucketLocation"], "Resource": bucket_arn},
        {"Sid": "Objects", "Effect": "Allow", "Action": ["s3:PutObject", "s3:GetObject", "s3:DeleteObject"],
         "Resource": f"{bucket_arn}/{folder}/*"},
    ]
    for index, (source_arn, source_folder) in enumerate(read_from):
        objects = f"{source_arn}/{source_folder}/*" if source_folder else f"{source_arn}/*"
        statements.extend([
            {"Sid": f"RestoreSourceBucket{index}", "Effect": "Allow", "Action": ["s3:ListBucket", "s3:GetBucketLocation"],
             "Resource": source_arn},
            {"Sid": f"RestoreSourceObjects{index}", "Effect": "Allow", "Action": ["s3:GetObject"], "Resource": objects},
            # The key is named by what it decrypts (the old bucket's key ARN is not known here):
            # the encryption context S3 sends, the bucket's ARN (bucket key) or the object's.
            {"Sid": f"RestoreSourceDecrypt{index}", "Effect": "Allow", "Action": "kms:Decrypt", "Resource": "*",
             "Condition": {"StringEquals": {"kms:ViaService": f"s3.{source_region}.amazonaws.com"},
                           "StringLike": {"kms:EncryptionContext:aws:s3:arn": [source_arn, objects]}}},
        ])
    return {"Version": "2012-10-17", "Statement": statements}


@dataclass
class RestoreSource:
    backup_file: str
    bucket: Optional[str] = None  # None: the stack's own bucket
    folder: Optional[str] = None
    region: Optional[str] = None
    encryption_key: Optional[pulumi.Input[str]] = None  # the old stack's key (secret), for *.enc files


@dataclass
class RancherBackupsArgs:
    provider: k8s.Provider
    gate: pulumi.Resource
    connection: ApiConnection
    region: str
    bucket_name: pulumi.Input[str]
    bucket_arn: pulumi.Input[str]
    folder: str
    chart_version: str
    rancher_version: str
    schedule: str
    retention: int
    key_max_age_days: int
    proxy: Optional[str] = None
    no_proxy: Sequence[str] = field(default_factory=list[str])
    restore: Optional[RestoreSource] = None
    # The user's permissions boundary: a policy name or ARN (setting iamPermissionsBoundary).
    permissions_boundary: Optional[str] = None


class RancherBackups(pulumi.ComponentResource):
    # What the Rancher release must wait for: the restore (if any) and the backup of the
    # Rancher being replaced.
    before_rancher: list[pulumi.Resource]
    # The restore's completion (empty without restoreFromBackup): what the program's own
    # cattle-system secrets wait for, so the old stack's copies never overwrite them.
    restored: list[pulumi.Resource]
    encryption_key: pulumi.Output[str]  # secret: carried to a new stack to restore
    user_arn: pulumi.Output[str]

    def __init__(self, name: str, args: RancherBackupsArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("rancher-ha:backups:RancherBackups", name, None, opts)

        def in_cluster(*extra: pulumi.Resource) -> pulumi.ResourceOptions:
            # As in components/rancher.py: after the gate, skipped by a destroy that takes
            # the cluster with it.
            return child(self, provider=args.provider, depends_on=[args.gate, *extra], deleted_with=args.provider)

        # --- credentials -------------------------------------------------------------
        user = aws.iam.User(
            f"{name}-user",
            path=user_path(stack_name()),
            permissions_boundary=boundary_policy_arn(args.permissions_boundary, pulumi.InvokeOptions(parent=self)),
            tags=tags(f"{name}-user"),
            opts=child(self),
        )
        read_from: list[tuple[pulumi.Input[str], str]] = []
        restore = args.restore
        if restore is not None and restore.bucket:
            read_from.append((f"arn:aws:s3:::{restore.bucket}", restore.folder or ""))
        aws.iam.UserPolicy(
            f"{name}-user-policy",
            user=user.name,
            policy=pulumi.Output.all(args.bucket_arn, *[arn for arn, _ in read_from]).apply(
                lambda arns: json.dumps(
                    backup_user_policy(arns[0], args.folder, [(arn, folder) for arn, (_, folder) in zip(arns[1:], read_from)],
                                       (restore.region if restore else None) or args.region)
                )
            ),
            opts=child(self),
        )
        key = aws.iam.AccessKey(
            f"{name}-access-key",
            user=user.name,
            # A new key every half max age; the old one is deleted after the Secret holds
            # the new one (create-before-delete, deletes run last).
            opts=child(self, replacement_trigger=renewal_window(args.key_max_age_days * 24)),
        )

        namespace = k8s.core.v1.Namespace(
            f"{name}-namespace", metadata=k8s.meta.v1.ObjectMetaArgs(name=NAMESPACE), opts=in_cluster()
        )

        def secret(resource_name: str, secret_name: str, data: Mapping[str, pulumi.Input[str]]) -> k8s.core.v1.Secret:
            return k8s.core.v1.Secret(
                resource_name,
                metadata=k8s.meta.v1.ObjectMetaArgs(name=secret_name, namespace=namespace.metadata.name),
                type="Opaque",
                string_data=data,
                opts=in_cluster(namespace),
            )

        credentials = secret(
            f"{name}-s3-credentials",
            credentials_secret_name(),
            {"accessKey": key.id, "secretKey": pulumi.Output.secret(key.secret)},
        )
        key_bytes = random.RandomBytes(f"{name}-encryption-key", length=32, opts=child(self))
        self.encryption_key = pulumi.Output.secret(key_bytes.base64)
        encryption = secret(
            f"{name}-encryption-config",
            encryption_secret_name(),
            {ENCRYPTION_CONFIG_KEY: self.encryption_key.apply(encryption_configuration)},
        )

        # --- the operator ------------------------------------------------------------
        crds = pinned_release(
            "rancher-backup-crd", args.chart_version, CHART_REPOSITORY, namespace.metadata.name, {},
            # The operator's charts hold no state of Rancher's: a failed upgrade may roll back.
            timeout=600, atomic=True, opts=in_cluster(namespace),
        )
        location = S3Location(bucket=args.bucket_name, folder=args.folder, region=args.region)
        operator = pinned_release(
            "rancher-backup", args.chart_version, CHART_REPOSITORY, namespace.metadata.name,
            chart_values(location, args.proxy, args.no_proxy),
            timeout=600, atomic=True, opts=in_cluster(namespace, crds, credentials),
        )

        def custom_resource(resource_name: str, body: BackupObject | RestoreObject, *after: pulumi.Resource) -> k8s.apiextensions.CustomResource:
            return k8s.apiextensions.CustomResource(
                resource_name,
                api_version=body["apiVersion"],
                kind=body["kind"],
                metadata=body["metadata"],
                spec=body["spec"],
                opts=in_cluster(operator, *after),
            )

        # --- restore (a new stack taking over an old one's Rancher) -------------------
        restored: list[pulumi.Resource] = []
        if restore is not None:
            encrypted = restore.backup_file.endswith(".enc")
            after: list[pulumi.Resource] = []
            if encrypted:
                # Settings refuse an encrypted (.enc) restoreFromBackup without restoreEncryptionKey.
                assert restore.encryption_key is not None
                after.append(
                    secret(
                        f"{name}-restore-encryption-config",
                        restore_encryption_secret_name(),
                        {ENCRYPTION_CONFIG_KEY: pulumi.Output.secret(restore.encryption_key).apply(encryption_configuration)},
                    )
                )
            source = None
            if restore.bucket:
                source = S3Location(bucket=restore.bucket, folder=restore.folder or "", region=restore.region or args.region)
            body = restore_object(restore.backup_file, source.spec(credentials_secret_name()) if source else None, encrypted)
            restore_cr = custom_resource(f"{name}-restore", body, *after)
            restored.append(
                ObjectReady(
                    f"{name}-restore-completed", args.connection,
                    f"/apis/{API_VERSION}/restores/{body['metadata']['name']}", needs_file=False,
                    timeout_seconds=RESTORE_TIMEOUT_SECONDS, opts=child(self, depends_on=[restore_cr]),
                )
            )

        # --- backups -----------------------------------------------------------------
        scheduled = backup_object(scheduled_backup_name(), args.schedule, args.retention)
        custom_resource(f"{name}-scheduled", scheduled, encryption, *restored)
        before = backup_object(pre_upgrade_backup_name(args.rancher_version))
        before_cr = custom_resource(f"{name}-before-upgrade", before, encryption, *restored)
        before_done = ObjectReady(
            f"{name}-before-upgrade-completed", args.connection,
            f"/apis/{API_VERSION}/backups/{before['metadata']['name']}", needs_file=True,
            timeout_seconds=BACKUP_TIMEOUT_SECONDS, opts=child(self, depends_on=[before_cr]),
        )
        self.restored = restored
        self.before_rancher = [*restored, before_done]
        self.user_arn = user.arn
        self.register_outputs({"user_arn": self.user_arn})
