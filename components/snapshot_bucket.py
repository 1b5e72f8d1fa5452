"""The S3 bucket for RKE2 etcd snapshots: private, versioned, encrypted with a key of its
own, readable and writable by the server nodes only.

A snapshot holds every secret of the cluster. The bucket is created before the servers
(their role policy names it); `restrict_to(node role)` then adds what names the role: a
customer-managed KMS key whose policy lets only that role use it (through S3), default
encryption with it, and a bucket policy that refuses requests without TLS and object
reads and writes by anyone but the nodes.

Backup readers (setting rancherBackupReaders): the principals a move to a new stack
restores with (the new stack's backup user). They may read the Rancher backup folder's
files and decrypt them through S3, nothing else: never the etcd snapshots, never a write.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Optional, Sequence, TypeAlias

import pulumi
import pulumi_aws as aws

from .instance_role import PolicyDocument, Statement
from .naming import child, stack_label, tags

# What the account (through IAM policies of its administrators) may do with the key: run
# it, never use it. Without an account principal in the key policy nobody could change
# or delete the key again (only AWS support can recover an unmanageable key), and KMS
# refuses a policy that would lock out the caller (the policy lockout safety check of
# CreateKey/PutKeyPolicy). kms:CreateGrant is left out: a grant gives use of the key.
KEY_ADMINISTRATION_ACTIONS = [
    "kms:CancelKeyDeletion", "kms:CreateAlias", "kms:DeleteAlias", "kms:DescribeKey", "kms:DisableKey",
    "kms:DisableKeyRotation", "kms:EnableKey", "kms:EnableKeyRotation", "kms:GetKeyPolicy", "kms:GetKeyRotationStatus",
    "kms:ListGrants", "kms:ListKeyPolicies", "kms:ListResourceTags", "kms:PutKeyPolicy", "kms:RevokeGrant",
    "kms:ScheduleKeyDeletion", "kms:TagResource", "kms:UntagResource", "kms:UpdateAlias", "kms:UpdateKeyDescription",
]
# What S3 asks KMS for on behalf of the nodes (SSE-KMS with a bucket key: GenerateDataKey
# for a PutObject, Decrypt for a GetObject; "Using server-side encryption with AWS KMS keys").
KEY_USE_ACTIONS = ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"]
# Object reads and writes: the snapshots themselves.
OBJECT_DATA_ACTIONS = ["s3:GetObject*", "s3:PutObject*", "s3:RestoreObject"]
# What a backup reader may do: what backup-restore-operator's Restore sends (restore/
# download.go -> objectstore GetS3Client: minio BucketExists = HeadBucket, authorised as
# s3:ListBucket with no s3:prefix; DownloadFromS3WithPrefix: ListObjects with the prefix
# `<folder>/<file>`, then GetObject), and GetBucketLocation (minio, when it lacks the region).
READER_ACTIONS = ["s3:GetObject", "s3:ListBucket", "s3:GetBucketLocation"]
Condition: TypeAlias = dict[str, dict[str, str | list[str]]]  # a statement's Condition block
# OBJECT_DATA_ACTIONS but the plain s3:GetObject (`?`: one character, so not GetObject itself).
READER_DENIED_IN_FOLDER = ["s3:GetObject?*", "s3:PutObject*", "s3:RestoreObject"]


@dataclass(frozen=True)
class BackupReaders:
    """rancherBackupReaders and the folder they may read (`rancher-backups/<stack>`)."""

    arns: Sequence[str]
    folder: str

    def roots(self) -> list[str]:
        """The readers' accounts: a bucket or key policy names an account (its root) and
        narrows it with aws:PrincipalArn; it cannot name a pattern, nor a user that does
        not exist yet (S3 and KMS refuse such a policy)."""
        return sorted({f"arn:{arn.split(':')[1]}:iam::{arn.split(':')[4]}:root" for arn in self.arns})

    def prefixes(self) -> list[str]:
        """The s3:prefix of a listing inside the folder (not the bare folder name, which
        lists `<folder>-other/` too)."""
        return [f"{self.folder}/*"]


def key_policy(partition: str, account: str, region: str, writer_arns: Sequence[str],
               readers: Optional[BackupReaders] = None, bucket_arn: str = "") -> PolicyDocument:
    statements: list[Statement] = [
        {
            "Sid": "AccountAdministersTheKeyOnly",
            "Effect": "Allow",
            "Principal": {"AWS": f"arn:{partition}:iam::{account}:root"},
            "Action": KEY_ADMINISTRATION_ACTIONS,
            "Resource": "*",
        },
        {
            "Sid": "NodesUseTheKeyThroughS3",
            "Effect": "Allow",
            "Principal": {"AWS": list(writer_arns)},
            "Action": KEY_USE_ACTIONS,
            "Resource": "*",
            "Condition": {"StringEquals": {"kms:ViaService": f"s3.{region}.amazonaws.com"}},
        },
    ]
    if readers is not None and readers.arns:
        statements.append({
            # Decrypt only (S3 reading an SSE-KMS object for them), only through S3 in the
            # bucket's region, only this bucket's objects: with a bucket key the encryption
            # context is the bucket's ARN, without one the object's. A principal of the
            # key's own account needs its IAM policy to allow it too (the root delegates).
            "Sid": "BackupReadersDecryptThroughS3",
            "Effect": "Allow",
            "Principal": {"AWS": readers.roots()},
            "Action": "kms:Decrypt",
            "Resource": "*",
            "Condition": {
                "StringEquals": {"kms:ViaService": f"s3.{region}.amazonaws.com"},
                "StringLike": {"kms:EncryptionContext:aws:s3:arn": [bucket_arn, f"{bucket_arn}/{readers.folder}/*"]},
                "ArnLike": {"aws:PrincipalArn": list(readers.arns)},
            },
        })
    return {"Version": "2012-10-17", "Statement": statements}


def principal_arn_patterns(caller_arn: str) -> list[str]:
    """`aws:PrincipalArn` of the caller `aws sts get-caller-identity` names: an assumed-role
    session is authorised as its role, whose ARN may carry a path the session ARN lacks."""
    prefix, _, rest = caller_arn.partition(":sts::")
    if rest and rest.split(":", 1)[1].startswith("assumed-role/"):
        account, resource = rest.split(":", 1)
        role = resource.split("/")[1]
        iam = f"{prefix}:iam::{account}:role"
        return [f"{iam}/{role}", f"{iam}/*/{role}"]
    return [caller_arn]


def administrators(admin_arns: Sequence[str], caller_arn: str) -> list[str]:
    """Who manages the bucket: snapshotBucketAdmins (required in prod), whoever runs `pulumi
    up`, so no deployer locks out a listed one; and the identity running this `pulumi up`,
    so a list that misses it (a typo, a wrong path) cannot lock out the very role applying
    it, which only the account's root could undo."""
    callers = principal_arn_patterns(caller_arn)
    return [*admin_arns, *(arn for arn in callers if arn not in admin_arns)]


def bucket_policy(bucket_arn: str, writer_arns: Sequence[str], admin_arns: Sequence[str],
                  readers: Optional[BackupReaders] = None) -> PolicyDocument:
    """Without readers, the policy of a stack that lends nothing; with them, the same
    statements exempt the readers (2 and 3), and statements that name only the readers
    take back all but READER_ACTIONS on the backup folder."""
    policy = _bucket_policy(bucket_arn, writer_arns, admin_arns, readers.arns if readers else ())
    if readers is not None and readers.arns:
        policy["Statement"].extend(reader_statements(bucket_arn, writer_arns, admin_arns, readers))
    return policy


def reader_statements(bucket_arn: str, writer_arns: Sequence[str], admin_arns: Sequence[str],
                      readers: BackupReaders) -> list[Statement]:
    everything = [bucket_arn, f"{bucket_arn}/*"]
    backups = f"{bucket_arn}/{readers.folder}/*"
    # Deny statements about a reader that is not a writer (nor, where the bucket's
    # management is concerned, an administrator: a pattern that happens to match one must
    # not lock it out).
    reader: Condition = {"ArnLike": {"aws:PrincipalArn": list(readers.arns)}}

    def not_one_of(*groups: Sequence[str]) -> Condition:
        return {**reader, "ArnNotLike": {"aws:PrincipalArn": [arn for group in groups for arn in group]}}

    return [
        {
            # Outside the backup folder a reader touches no object: never an etcd snapshot.
            "Sid": "BackupReadersNoObjectOutsideTheFolder",
            "Effect": "Deny",
            "Principal": "*",
            "Action": OBJECT_DATA_ACTIONS,
            "NotResource": backups,
            "Condition": not_one_of(writer_arns),
        },
        {
            # Inside it, the plain GetObject and nothing else: no write, ACL or version.
            "Sid": "BackupReadersOnlyGetTheFolder",
            "Effect": "Deny",
            "Principal": "*",
            "Action": READER_DENIED_IN_FOLDER,
            "Resource": backups,
            "Condition": not_one_of(writer_arns),
        },
        {
            "Sid": "BackupReadersOnlyRead",
            "Effect": "Deny",
            "Principal": "*",
            "NotAction": READER_ACTIONS,
            "Resource": everything,
            "Condition": not_one_of(writer_arns, admin_arns),
        },
        {
            # A listing with a prefix lists the folder only. HeadBucket (which the operator
            # sends first) carries no prefix, so an unprefixed ListBucket stays allowed: it
            # shows key names, never an object.
            "Sid": "BackupReadersListOnlyTheFolder",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:ListBucket",
            "Resource": bucket_arn,
            "Condition": {**not_one_of(writer_arns, admin_arns), "Null": {"s3:prefix": "false"},
                          "StringNotLike": {"s3:prefix": readers.prefixes()}},
        },
        {
            # What admits a reader of another account (in the bucket's own account the
            # reader's IAM policy suffices); a reader's own policy must allow it as well.
            "Sid": "BackupReadersRead",
            "Effect": "Allow",
            "Principal": {"AWS": readers.roots()},
            "Action": "s3:GetObject",
            "Resource": backups,
            "Condition": reader,
        },
        {
            "Sid": "BackupReadersFindTheFolder",
            "Effect": "Allow",
            "Principal": {"AWS": readers.roots()},
            "Action": ["s3:ListBucket", "s3:GetBucketLocation"],
            "Resource": bucket_arn,
            "Condition": {**reader, "StringLikeIfExists": {"s3:prefix": readers.prefixes()}},
        },
    ]


def _bucket_policy(bucket_arn: str, writer_arns: Sequence[str], admin_arns: Sequence[str],
                   reader_arns: Sequence[str]) -> PolicyDocument:
    everything = [bucket_arn, f"{bucket_arn}/*"]
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "DenyWithoutTls",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": everything,
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            },
            {
                # Whatever IAM grants (ReadOnlyAccess has s3:Get*), only the nodes read or
                # write snapshots; administrators and the deployer neither.
                "Sid": "OnlyNodesReadOrWriteSnapshots",
                "Effect": "Deny",
                "Principal": "*",
                "Action": OBJECT_DATA_ACTIONS,
                "Resource": f"{bucket_arn}/*",
                "Condition": {"ArnNotLike": {"aws:PrincipalArn": [*writer_arns, *reader_arns]}},
            },
            {
                # Everything else (listing, deleting, the bucket's configuration) to the
                # nodes and the administrators (`administrators`): every identity that runs
                # `pulumi up`, refresh or destroy must be one, to keep managing the bucket
                # and, outside prod, empty it on destroy.
                "Sid": "OnlyNodesAndAdministrators",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": everything,
                "Condition": {"ArnNotLike": {"aws:PrincipalArn": [*writer_arns, *admin_arns, *reader_arns]}},
            },
        ],
    }


@dataclass
class SnapshotBucketArgs:
    protect: bool
    # Days a superseded snapshot version is kept before S3 removes it.
    noncurrent_version_days: int = 30
    # Principals (IAM role or user ARNs, wildcards allowed) that manage the bucket (every
    # deployer: CI's deploy role, a break-glass role); empty: whoever runs `pulumi up`.
    # None of them may read or write a snapshot.
    admin_arns: Sequence[str] = ()


class SnapshotBucket(pulumi.ComponentResource):
    bucket_name: pulumi.Output[str]
    bucket_arn: pulumi.Output[str]

    def __init__(self, name: str, args: SnapshotBucketArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("rancher-ha:backup:SnapshotBucket", name, None, opts)
        bucket = aws.s3.Bucket(
            name,
            # S3 names: lowercase letters, digits, hyphens; a prefix of at most 37.
            bucket_prefix=f"rancher-ha-{stack_label(20)}-etcd-",
            force_destroy=not args.protect,
            tags=tags(name),
            opts=child(self, protect=args.protect),
        )
        public_access = aws.s3.BucketPublicAccessBlock(
            f"{name}-public-access",
            bucket=bucket.id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=child(self),
        )
        versioning = aws.s3.BucketVersioning(
            f"{name}-versioning",
            bucket=bucket.id,
            versioning_configuration=aws.s3.BucketVersioningVersioningConfigurationArgs(status="Enabled"),
            opts=child(self),
        )
        aws.s3.BucketLifecycleConfiguration(
            f"{name}-lifecycle",
            bucket=bucket.id,
            rules=[
                aws.s3.BucketLifecycleConfigurationRuleArgs(
                    id="expire-superseded-snapshots",
                    status="Enabled",
                    filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=""),
                    noncurrent_version_expiration=aws.s3.BucketLifecycleConfigurationRuleNoncurrentVersionExpirationArgs(
                        noncurrent_days=args.noncurrent_version_days
                    ),
                )
            ],
            opts=child(self, depends_on=[versioning]),
        )
        self._name, self._bucket, self._args = name, bucket, args
        self._public_access = public_access
        self.bucket_name = bucket.bucket
        self.bucket_arn = bucket.arn
        self.register_outputs({"bucket_name": self.bucket_name, "bucket_arn": self.bucket_arn})

    def restrict_to(self, writer_arns: Sequence[pulumi.Input[str]], region: str, unique_suffix: pulumi.Input[str],
                    readers: Optional[BackupReaders] = None) -> None:
        """The key, default encryption and bucket policy, once the writers exist: the node
        role (etcd snapshots) and the rancher-backup user, each in its own folder by IAM;
        and the readers of the Rancher backups (a new stack restoring from this one)."""
        name, bucket = self._name, self._bucket
        invoke = pulumi.InvokeOptions(parent=self)
        caller = aws.get_caller_identity_output(opts=invoke)
        partition = aws.get_partition_output(opts=invoke).partition
        key = aws.kms.Key(
            f"{name}-key",
            description=f"rancher-ha {stack_label()} etcd snapshots",
            enable_key_rotation=True,
            deletion_window_in_days=30,
            policy=pulumi.Output.all(partition, caller.account_id, pulumi.Output.all(*writer_arns), bucket.arn).apply(
                lambda v: json.dumps(key_policy(v[0], v[1], region, v[2], readers, v[3]), sort_keys=True)
            ),
            tags=tags(f"{name}-key"),
            opts=child(self, protect=self._args.protect),
        )
        aws.kms.Alias(
            f"{name}-key-alias",
            # Alias names are unique per account and region: the stack's unique suffix.
            name=pulumi.Output.concat("alias/rancher-ha/", stack_label(), "-", unique_suffix, "/etcd-snapshots"),
            target_key_id=key.key_id,
            opts=child(self),
        )
        aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-encryption",
            bucket=bucket.id,
            rules=[
                aws.s3.BucketServerSideEncryptionConfigurationRuleArgs(
                    apply_server_side_encryption_by_default=aws.s3.BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(
                        sse_algorithm="aws:kms", kms_master_key_id=key.arn
                    ),
                    bucket_key_enabled=True,
                )
            ],
            opts=child(self),
        )
        aws.s3.BucketPolicy(
            f"{name}-policy",
            bucket=bucket.id,
            policy=pulumi.Output.all(bucket.arn, pulumi.Output.all(*writer_arns), caller.arn).apply(
                lambda v: json.dumps(
                    bucket_policy(v[0], v[1], administrators(self._args.admin_arns, v[2]), readers), sort_keys=True
                )
            ),
            # S3 refuses a policy while the public-access block is being changed.
            opts=child(self, depends_on=[self._public_access]),
        )
