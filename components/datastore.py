"""The K3s external datastore: RDS MySQL 8.4, private, encrypted, backed up, TLS-only."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, TypedDict

import pulumi
import pulumi_aws as aws
import pulumi_random as random

from .naming import child, stack_label, tags

DATABASE_NAME = "k3s"
DATABASE_USER = "k3s"
MYSQL_PORT = 3306


@dataclass
class DatastoreArgs:
    subnet_ids: Sequence[pulumi.Input[str]]
    security_group_id: pulumi.Input[str]
    instance_class: str
    engine_version: str
    allocated_storage_gb: int
    backup_retention_days: int
    multi_az: bool
    # False: RDS holds class, Multi-AZ, storage and engine edits for the maintenance window.
    apply_immediately: bool
    deletion_protection: bool
    final_snapshot: bool
    protect: bool
    # Restore (docs/disaster-recovery.md#datastore-lost): an RDS snapshot identifier, or a
    # point in time ("latest" or a UTC time) of a source instance. Both are force-new.
    restore_from_snapshot: Optional[str] = None
    restore_source_instance: Optional[str] = None
    restore_time: Optional[str] = None


class RestoreArguments(TypedDict, total=False):
    """The restore inputs of aws.rds.Instance, at most one of them."""

    snapshot_identifier: str
    restore_to_point_in_time: aws.rds.InstanceRestoreToPointInTimeArgs


def restore_arguments(args: DatastoreArgs) -> RestoreArguments:
    """aws.rds.Instance inputs that create the datastore from a snapshot or a point in time.

    The restored database keeps its users; the provider sets the master password after
    the restore (ModifyDBInstance; terraform-provider-aws v6.58.0 resourceInstanceCreate),
    so the DSN's password (this stack's) is the one that works."""
    if args.restore_from_snapshot:
        return {"snapshot_identifier": args.restore_from_snapshot}
    if args.restore_source_instance:
        latest = args.restore_time == "latest"
        return {
            "restore_to_point_in_time": aws.rds.InstanceRestoreToPointInTimeArgs(
                source_db_instance_identifier=args.restore_source_instance,
                use_latest_restorable_time=True if latest else None,
                restore_time=None if latest else args.restore_time,
            )
        }
    return {}


def mysql_dsn(user: str, password: str, host: str, port: int, database: str) -> str:
    # K3s rejects a tls= parameter in the DSN; TLS is enabled with datastore-cafile.
    return f"mysql://{user}:{password}@tcp({host}:{port})/{database}"


class Datastore(pulumi.ComponentResource):
    address: pulumi.Output[str]
    port: pulumi.Output[int]
    dsn: pulumi.Output[str]  # secret

    def __init__(self, name: str, args: DatastoreArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("rancher-ha:datastore:Datastore", name, None, opts)
        subnet_group = aws.rds.SubnetGroup(
            f"{name}-subnets", subnet_ids=list(args.subnet_ids), tags=tags(f"{name}-subnets"), opts=child(self)
        )
        parameters = aws.rds.ParameterGroup(
            f"{name}-params",
            family="mysql8.4",
            description="rancher-ha K3s datastore: TLS only",
            parameters=[aws.rds.ParameterGroupParameterArgs(name="require_secure_transport", value="1")],
            tags=tags(f"{name}-params"),
            opts=child(self),
        )
        # Letters and digits only: the password sits inside a DSN URL.
        password = random.RandomPassword(f"{name}-password", length=32, special=False, opts=child(self))
        # A final snapshot name is used once, at deletion: a second deletion of a stack of
        # the same name (destroy, create, destroy) must not collide with the first one's
        # snapshot (DBSnapshotAlreadyExists). The suffix is new with every stack. No
        # setting replaces the datastore (its force-new inputs are fixed here); replacing
        # it by hand (`--replace`) should replace this suffix with it.
        final_suffix = random.RandomId(f"{name}-final-snapshot-suffix", byte_length=4, opts=child(self))
        instance = aws.rds.Instance(
            f"{name}-mysql",
            engine="mysql",
            engine_version=args.engine_version,
            instance_class=args.instance_class,
            allocated_storage=args.allocated_storage_gb,
            storage_type="gp3",
            storage_encrypted=True,
            publicly_accessible=False,
            multi_az=args.multi_az,
            apply_immediately=args.apply_immediately,
            db_name=DATABASE_NAME,
            username=DATABASE_USER,
            password=password.result,
            port=MYSQL_PORT,
            db_subnet_group_name=subnet_group.name,
            parameter_group_name=parameters.name,
            vpc_security_group_ids=[args.security_group_id],
            backup_retention_period=args.backup_retention_days,
            copy_tags_to_snapshot=True,
            auto_minor_version_upgrade=True,
            deletion_protection=args.deletion_protection,
            skip_final_snapshot=not args.final_snapshot,
            final_snapshot_identifier=(
                # RDS identifiers: a letter first, letters, digits and single hyphens.
                pulumi.Output.concat(f"rancher-ha-{stack_label()}-k3s-final-", final_suffix.hex) if args.final_snapshot else None
            ),
            tags=tags(f"{name}-mysql"),
            **restore_arguments(args),
            opts=child(self, protect=args.protect),
        )
        self.address = instance.address
        self.port = instance.port
        self.dsn = pulumi.Output.secret(
            pulumi.Output.all(password.result, instance.address, instance.port).apply(
                lambda values: mysql_dsn(DATABASE_USER, values[0], values[1], int(values[2]), DATABASE_NAME)
            )
        )
        self.register_outputs({"address": self.address, "port": self.port})
