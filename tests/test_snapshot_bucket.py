"""RKE2 etcd snapshots to S3: a private, encrypted, versioned bucket; writes scoped to a folder."""

import json

from conftest import RKE2, cached_run
from helpers import server_instances, written_file
from rendering.cloud_init import BASE_CONFIG_PATH

S3 = {**RKE2, "rancher-ha:etcdSnapshotS3": True}


def test_bucket_is_private_encrypted_and_versioned():
    run = cached_run(S3)
    (bucket,) = run.of_type("aws:s3/bucket:Bucket")
    (block,) = run.of_type("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")
    assert block.inputs["bucket"] == bucket.outputs["id"]
    assert all(block.inputs[key] is True for key in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets"))
    (encryption,) = run.of_type("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration")
    (rule,) = encryption.inputs["rules"]
    assert rule["applyServerSideEncryptionByDefault"]["sseAlgorithm"] == "aws:kms"
    # The stack's own key (not aws/s3), with a bucket key, rotation and an alias.
    (key,) = run.of_type("aws:kms/key:Key")
    assert rule["applyServerSideEncryptionByDefault"]["kmsMasterKeyId"] == key.outputs["arn"] and rule["bucketKeyEnabled"]
    assert key.inputs["enableKeyRotation"] is True
    (alias,) = run.of_type("aws:kms/alias:Alias")
    assert alias.inputs["targetKeyId"] == key.outputs["keyId"] and alias.inputs["name"].startswith("alias/rancher-ha/dev-")
    (policy,) = run.of_type("aws:s3/bucketPolicy:BucketPolicy")
    assert {s["Sid"] for s in json.loads(policy.inputs["policy"])["Statement"]} == {
        "DenyWithoutTls", "OnlyNodesReadOrWriteSnapshots", "OnlyNodesAndAdministrators"}
    (versioning,) = run.of_type("aws:s3/bucketVersioning:BucketVersioning")
    assert versioning.inputs["versioningConfiguration"]["status"] == "Enabled"
    assert bucket.inputs["forceDestroy"] is True and not bucket.protect  # dev: disposable
    prod = cached_run(S3, stack="prod")
    (prod_bucket,) = prod.of_type("aws:s3/bucket:Bucket")
    assert prod_bucket.protect and prod_bucket.inputs["forceDestroy"] is False


def test_nodes_snapshot_to_the_bucket_folder():
    run = cached_run(S3)
    (bucket,) = run.of_type("aws:s3/bucket:Bucket")
    for instance in server_instances(run):
        config = yaml_config(instance)
        assert config["etcd-s3"] is True
        assert config["etcd-s3-bucket"] == bucket.outputs["bucket"]
        assert config["etcd-s3-region"] == "eu-west-1" and config["etcd-s3-folder"] == "rancher-ha/dev"
        assert "etcd-s3-access-key" not in config  # the instance profile is used
    assert run.outputs["etcdSnapshotBucket"].value == bucket.outputs["bucket"]


def test_role_may_write_the_folder_only():
    run = cached_run(S3)
    (bucket,) = run.of_type("aws:s3/bucket:Bucket")
    arn = bucket.outputs["arn"]
    (policy,) = run.of_type("aws:iam/rolePolicy:RolePolicy")
    statements = {s["Sid"]: s for s in json.loads(policy.inputs["policy"])["Statement"]}
    assert statements["ReadWriteSnapshots"]["Resource"] == f"{arn}/rancher-ha/dev/*"
    assert set(statements["ReadWriteSnapshots"]["Action"]) == {"s3:GetObject", "s3:PutObject", "s3:DeleteObject"}
    # HeadBucket is authorised as s3:ListBucket with no s3:prefix: no condition may sit on it.
    assert statements["FindAndListSnapshotBucket"] == {
        "Sid": "FindAndListSnapshotBucket", "Effect": "Allow", "Action": ["s3:ListBucket", "s3:GetBucketLocation"], "Resource": arn}
    # Only Session Manager's agent actions (no resource type) sit on '*', limited to instances.
    resources = [s["Resource"] for sid, s in statements.items() if sid != "SessionManagerAgent"]
    assert "*" not in resources and f"{arn}/*" not in resources


def test_without_s3_snapshots_stay_local():
    run = cached_run(RKE2)
    assert run.of_type("aws:s3/bucket:Bucket") == []
    config = yaml_config(server_instances(run)[0])
    assert "etcd-s3" not in config and config["etcd-snapshot-retention"] == 28


def yaml_config(instance):
    import yaml

    return yaml.safe_load(written_file(instance, BASE_CONFIG_PATH)["content"])
