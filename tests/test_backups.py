"""Rancher backups (components/backups.py): the operator, the encrypted scheduled backup,
the backup before every Rancher upgrade, the restore into a new stack, the backup user's
policy and its rotation, and the explicit DNS take-over.

Seams tested against their real counterparts where this machine has one:
- Backup/Restore objects against the CRDs of the operator tag the pinned chart packages
  (reference/upstream/crds/rancher-backup-<tag>.json, strict: unknown fields rejected);
- chart values against the key tree of the chart's values.yaml at that tag and the
  `.Values` paths its templates read (reference/upstream/charts/). The chart itself is not
  in ../shared/reference/charts, so it is not rendered here (tests/test_backup_chart_real.py
  renders it from a local snapshot of the operator's repository, where one is given);
- the backup user's policy with the IAM evaluator of tests/test_iam_seams.py, against the
  calls the operator's S3 client makes;
- the order of a Rancher upgrade and of a restore in the offline plan (offline/plan.py).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from conftest import PROXY, cached_run, run
from offline.charts import rancher_backup_schemas
from offline.plan import plan_update
from test_iam_seams import Request, evaluate
from test_lifecycle import lifecycle_run

REPO_ROOT = Path(__file__).resolve().parents[1]
RELEASE = "kubernetes:helm.sh/v3:Release"
BACKUP = "kubernetes:resources.cattle.io/v1:Backup"
RESTORE = "kubernetes:resources.cattle.io/v1:Restore"
WAIT = "pulumi-python:dynamic/rancher-ha:ObjectReady"
SECRET = "kubernetes:core/v1:Secret"
RECORD = "aws:route53/record:Record"

BACKUPS = {"rancher-ha:rancherBackups": True}
OLD_FILE = "rancher-ha-prod-2f4b7c1e-0d3a-4e55-9d1a-4c1e2b3a4d5e-2026-12-07T06-00-00Z.tar.gz.enc"
OLD_KEY = base64.b64encode(bytes(range(32))).decode()
RESTORE_SETTINGS = {
    **BACKUPS,
    "rancher-ha:restoreFromBackup": OLD_FILE,
    "rancher-ha:restoreFromBucket": "rancher-ha-prod-etcd-0a1b2c3d",
    "rancher-ha:restoreFromFolder": "rancher-backups/prod",
    "rancher-ha:restoreEncryptionKey": OLD_KEY,
    "rancher-ha:takeOverDnsRecords": True,
}

def backup_run(overrides=None, preview=False, today="2026-03-01"):
    """A run with backups on and the renewal date pinned (the access key's rotation window)."""
    if preview:
        return cached_run({**BACKUPS, **(overrides or {})}, preview=True)
    return lifecycle_run({**BACKUPS, **(overrides or {})}, today=today)


def releases(result) -> dict:
    return {r.name: r for r in result.of_type(RELEASE)}


def one(result, type_token: str, name: str):
    (found,) = [r for r in result.of_type(type_token) if r.name == name]
    return found


def body(registration) -> dict:
    inputs = registration.inputs
    return {"apiVersion": inputs["apiVersion"], "kind": inputs["kind"], "metadata": inputs["metadata"], "spec": inputs["spec"]}


def operator_tag(result) -> str:
    from components.backups import operator_tag as tag_of

    return tag_of(releases(result)["rancher-backup"].inputs["version"])


# -- the operator ---------------------------------------------------------------------
@pytest.mark.parametrize("rancher, chart", [("2.14.4", "109.0.7+up10.0.8"), ("2.15.0", "110.0.0+up11.0.0")])
def test_the_operator_line_follows_the_rancher_minor(rancher, chart):
    result = backup_run({"rancher-ha:rancherVersion": rancher})
    found = releases(result)
    for name in ("rancher-backup-crd", "rancher-backup"):
        release = found[name]
        assert release.inputs["chart"] == name and release.inputs["name"] == name
        assert release.inputs["version"] == chart
        assert release.inputs["repositoryOpts"]["repo"] == "https://charts.rancher.io"
        assert release.inputs["namespace"] == "cattle-resources-system"
    # The CRDs come first; both after the gate, and skipped by a destroy of the cluster.
    assert found["rancher-backup-crd"].urn in found["rancher-backup"].dependencies
    gate = one(result, "pulumi-python:dynamic/rancher-ha:ApiGate", "cluster-access-api-ready")
    provider = one(result, "pulumi:providers:kubernetes", "cluster-access-k8s")
    for name in ("rancher-backup-crd", "rancher-backup"):
        assert gate.urn in found[name].dependencies
        assert found[name].deleted_with == provider.urn


def test_no_operator_unless_asked_and_dev_stacks_default_off():
    result = run()
    assert "rancher-backup" not in releases(result)
    assert result.of_type(BACKUP) == []


def _leaf_paths(values: dict, prefix: str = "") -> list[str]:
    paths = []
    for key, value in values.items():
        path = f"{prefix}{key}"
        paths += _leaf_paths(value, path + ".") if isinstance(value, dict) else [path]
    return paths


def _chart_knows(reference: dict, path: str) -> bool:
    node = reference["values"]
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            break
        node = node[part]
    else:
        return True
    return path in reference["templateReferences"]


@pytest.mark.parametrize("overrides", [{}, PROXY, {"rancher-ha:rancherVersion": "2.15.0"}], ids=["plain", "proxy", "2.15"])
def test_every_chart_value_is_a_key_of_the_chart_at_its_tag(overrides):
    result = backup_run(overrides)
    tag = operator_tag(result)
    reference = json.loads((REPO_ROOT / "reference/upstream/charts" / f"rancher-backup-{tag}-values.json").read_text())
    assert "rancher/backup-restore-operator" in reference["$comment"] and tag in reference["$comment"]
    values = releases(result)["rancher-backup"].inputs["values"]
    unknown = [path for path in _leaf_paths(values) if not _chart_knows(reference, path)]
    assert unknown == []
    # The default storage location the Backups use: the stack's bucket and its own folder.
    s3 = values["s3"]
    bucket = result.outputs["rancherBackupBucket"].value
    assert s3 == {
        "enabled": True, "bucketName": bucket, "folder": "rancher-backups/dev", "region": "eu-west-1",
        "endpoint": "s3.eu-west-1.amazonaws.com",  # the chart requires one whenever s3.enabled
        "credentialSecretName": "rancher-ha-dev-backup-s3", "credentialSecretNamespace": "cattle-resources-system",
    }
    if overrides is PROXY:
        assert values["proxy"] == "http://proxy.corp.example:3128" and ".svc" in values["noProxy"].split(",")


def test_the_value_check_catches_a_key_the_chart_does_not_have():
    reference = json.loads((REPO_ROOT / "reference/upstream/charts/rancher-backup-v10.0.8-values.json").read_text())
    assert _chart_knows(reference, "s3.credentialSecretName") and _chart_knows(reference, "proxy")
    assert not _chart_knows(reference, "s3.credentialsSecretName")
    assert not _chart_knows(reference, "s3.accessKey")


# -- objects against the CRDs ----------------------------------------------------------
def _validate(obj: dict, tag: str) -> None:
    schema = rancher_backup_schemas(tag)[(obj["apiVersion"], obj["kind"])]
    jsonschema.validate(obj, schema)


@pytest.mark.parametrize("overrides", [{}, RESTORE_SETTINGS, {**RESTORE_SETTINGS, "rancher-ha:rancherVersion": "2.15.0"}],
                         ids=["backups", "restore", "restore-2.15"])
def test_backup_and_restore_objects_are_valid_for_the_operator_installed(overrides):
    result = backup_run(overrides)
    tag = operator_tag(result)
    objects = [body(r) for r in result.of_type(BACKUP) + result.of_type(RESTORE)]
    assert len(objects) == (3 if "rancher-ha:restoreFromBackup" in overrides else 2)
    for obj in objects:
        _validate(obj, tag)


def test_the_crd_check_rejects_what_the_api_server_would():
    obj = {"apiVersion": "resources.cattle.io/v1", "kind": "Restore", "metadata": {"name": "x"},
           "spec": {"backupFilename": "a.tar.gz", "prune": False}}
    _validate(obj, "v11.0.0")
    for broken in ({**obj["spec"], "backupFileName": "a"}, {"prune": False}, {**obj["spec"], "deleteTimeoutSeconds": 11},
                   {**obj["spec"], "storageLocation": {"s3": {"bucketName": "b"}}}):
        with pytest.raises(jsonschema.ValidationError):
            _validate({**obj, "spec": broken}, "v11.0.0")
    backup = {"apiVersion": "resources.cattle.io/v1", "kind": "Backup", "metadata": {"name": "x"},
              "spec": {"resourceSetName": "s", "retentionCount": 0}}
    with pytest.raises(jsonschema.ValidationError):  # minimum 1
        _validate(backup, "v10.0.8")


def test_the_scheduled_backup_is_the_full_set_encrypted_on_the_schedule():
    result = backup_run({"rancher-ha:rancherBackupSchedule": "@daily", "rancher-ha:rancherBackupRetention": 30})
    scheduled = one(result, BACKUP, "rancher-backups-scheduled")
    assert scheduled.inputs["metadata"] == {"name": "rancher-ha-dev"}
    assert scheduled.inputs["spec"] == {
        "resourceSetName": "rancher-resource-set-full",
        "encryptionConfigSecretName": "rancher-ha-dev-backup-encryption",
        "schedule": "@daily",
        "retentionCount": 30,
    }
    # No storageLocation: the operator's default, i.e. the chart's s3 values.
    encryption = one(result, SECRET, "rancher-backups-encryption-config")
    assert encryption.urn in scheduled.dependencies


def test_the_encryption_configuration_is_a_secretbox_key_the_stack_keeps_secret():
    result = backup_run()
    encryption = one(result, SECRET, "rancher-backups-encryption-config")
    assert encryption.inputs["metadata"]["name"] == "rancher-ha-dev-backup-encryption"
    assert encryption.inputs["metadata"]["namespace"] == "cattle-resources-system"
    config = yaml.safe_load(encryption.inputs["stringData"]["encryption-provider-config.yaml"])
    assert config["apiVersion"] == "apiserver.config.k8s.io/v1" and config["kind"] == "EncryptionConfiguration"
    (rule,) = config["resources"]
    assert rule["resources"] == ["*.*"]
    (key,) = rule["providers"][0]["secretbox"]["keys"]
    assert len(base64.b64decode(key["secret"])) == 32  # secretbox needs exactly 32 bytes
    assert any(path.startswith("stringData") for path in encryption.secret_inputs)
    exported = result.outputs["rancherBackupEncryptionKey"]
    assert exported.secret and exported.value == key["secret"]


def test_the_operator_reads_the_access_key_from_a_secret_with_the_keys_it_expects():
    result = backup_run()
    credentials = one(result, SECRET, "rancher-backups-s3-credentials")
    key = one(result, "aws:iam/accessKey:AccessKey", "rancher-backups-access-key")
    # pkg/objectstore/s3minio.go reads exactly these two keys.
    assert set(credentials.inputs["stringData"]) == {"accessKey", "secretKey"}
    assert credentials.inputs["stringData"]["accessKey"] == key.outputs["id"]
    assert any(path.startswith("stringData") for path in credentials.secret_inputs)
    assert credentials.urn in releases(result)["rancher-backup"].dependencies


def test_names_a_restore_could_overwrite_belong_to_the_stack():
    """A restore writes the old stack's secrets in cattle-* namespaces back: this stack's
    credentials and key must have names the old stack's do not."""
    from offline.runner import run_program
    from conftest import BASE_CONFIG

    names = {}
    for stack in ("dev", "prod-eu"):
        result = run_program({**BASE_CONFIG, **BACKUPS, "rancher-ha:environment": "dev"}, stack=stack)
        names[stack] = {r.inputs["metadata"]["name"] for r in result.of_type(SECRET) if "rancher-backups" in r.name}
    assert names["dev"] and not names["dev"] & names["prod-eu"]


# -- credentials: least privilege and rotation --------------------------------------------
def _user_policy(result) -> dict:
    return json.loads(one(result, "aws:iam/userPolicy:UserPolicy", "rancher-backups-user-policy").inputs["policy"])


def operator_requests(bucket: str, folder: str) -> dict[str, Request]:
    """What backup-restore-operator's S3 client sends (pkg/objectstore/s3minio.go,
    pkg/controllers/backup/retention.go at v10.0.8/v11.0.0): BucketExists (HeadBucket),
    FPutObject, ListObjects with the folder as prefix, RemoveObject (retention),
    FGetObject/StatObject (restore)."""
    arn = f"arn:aws:s3:::{bucket}"
    key = f"{folder}/rancher-ha-dev-5c0e-2026-12-07T06-00-00Z.tar.gz.enc"
    return {
        "HeadBucket": Request("s3:ListBucket", arn),
        "ListObjects": Request("s3:ListBucket", arn, {"s3:prefix": f"{folder}/"}),
        "PutObject": Request("s3:PutObject", f"{arn}/{key}"),
        "GetObject": Request("s3:GetObject", f"{arn}/{key}"),
        "DeleteObject": Request("s3:DeleteObject", f"{arn}/{key}"),
    }


def test_the_backup_user_may_use_its_folder_and_nothing_else():
    result = backup_run({"rancher-ha:distribution": "rke2", "rancher-ha:etcdSnapshotS3": True})
    policy = _user_policy(result)
    bucket = result.outputs["rancherBackupBucket"].value
    assert result.outputs["etcdSnapshotBucket"].value == bucket  # one bucket, two folders
    verdicts = {what: evaluate([policy], r) for what, r in operator_requests(bucket, "rancher-backups/dev").items()}
    assert set(verdicts.values()) == {"Allow"}, verdicts
    arn = f"arn:aws:s3:::{bucket}"
    denied = [
        Request("s3:GetObject", f"{arn}/rancher-ha/dev/etcd-snapshot-rancher-server-0-1764547200"),  # etcd snapshots
        Request("s3:PutObject", f"{arn}/rancher-backups/other-stack/x.tar.gz"),
        Request("s3:PutObject", f"{arn}/rancher-backups/dev-x/x.tar.gz"),
        Request("s3:GetObject", "arn:aws:s3:::someone-elses-bucket/rancher-backups/dev/x.tar.gz"),
        Request("s3:ListBucket", "arn:aws:s3:::someone-elses-bucket"),
        Request("s3:PutBucketPolicy", arn),
        Request("s3:DeleteBucket", arn),
    ]
    assert {r.action + " " + r.resource: evaluate([policy], r) for r in denied} == {
        r.action + " " + r.resource: "ImplicitDeny" for r in denied
    }


def test_a_restoring_stack_may_only_read_the_old_folder():
    result = backup_run(RESTORE_SETTINGS)
    policy = _user_policy(result)
    old = operator_requests("rancher-ha-prod-etcd-0a1b2c3d", "rancher-backups/prod")
    assert evaluate([policy], old["HeadBucket"]) == "Allow"
    assert evaluate([policy], old["GetObject"]) == "Allow"
    for what in ("PutObject", "DeleteObject"):
        assert evaluate([policy], old[what]) == "ImplicitDeny", what
    assert evaluate([policy], Request("s3:GetObject", "arn:aws:s3:::rancher-ha-prod-etcd-0a1b2c3d/rancher-ha/prod/x")) == "ImplicitDeny"


def plan(old, new):
    from tools.plan import program_dynamic_diffs

    return plan_update(old, new, dynamic_diffs=program_dynamic_diffs())


def assert_engine_waits(result, chain: list[tuple[str, str]]) -> None:
    """Each (type, name) of `chain` cannot start before the previous one has finished: it
    is among its dependencies in the engine's graph (offline/destroy.py DependencyGraph,
    pkg/resource/graph). A plan's printed order alone is one of many valid orders."""
    from offline.destroy import DependencyGraph

    graph = DependencyGraph(result.registrations)
    urns = [one(result, type_token, name).urn for type_token, name in chain]
    for before, after in zip(urns, urns[1:]):
        assert before in graph.transitive_dependencies([after]) - {after}, (before, after)


def test_the_access_key_is_replaced_before_the_old_one_is_deleted():
    # 90 days' max age: a new key every 45 days, by the first `up` in the new window.
    same_window = plan(backup_run(today="2026-03-01"), backup_run(today="2026-03-20"))
    assert [s.name for s in same_window.steps if s.op != "same"] == []
    p = plan(backup_run(today="2026-03-01"), backup_run(today="2026-04-20"))
    changed = {(s.op, s.name, s.phase) for s in p.steps if s.op != "same"}
    assert ("replace", "rancher-backups-access-key", "update") in changed
    assert ("update", "rancher-backups-s3-credentials", "update") in changed
    # create-before-delete: the old key goes in the delete phase, after the Secret holds the new one.
    deletes = [s for s in p.steps if s.op == "delete" and s.name == "rancher-backups-access-key"]
    assert [d.phase for d in deletes] == ["delete"]
    order = {s.name: s.seq for s in p.steps if s.op != "same" and s.phase == "update"}
    assert order["rancher-backups-access-key"] < order["rancher-backups-s3-credentials"] < deletes[0].seq
    assert {name for _, name, _ in changed} <= {"rancher-backups-access-key", "rancher-backups-s3-credentials"}


# -- the backup before a Rancher upgrade --------------------------------------------------
def test_the_rancher_release_waits_for_the_backup_which_waits_for_the_operator():
    result = backup_run()
    rancher = releases(result)["rancher"]
    wait = one(result, WAIT, "rancher-backups-before-upgrade-completed")
    backup = one(result, BACKUP, "rancher-backups-before-upgrade")
    assert wait.urn in rancher.dependencies
    assert backup.urn in wait.dependencies
    assert releases(result)["rancher-backup"].urn in backup.dependencies
    assert backup.inputs["metadata"] == {"name": "rancher-ha-before-2-14-4"}
    assert "schedule" not in backup.inputs["spec"]  # one-time
    assert wait.inputs["path"] == "/apis/resources.cattle.io/v1/backups/rancher-ha-before-2-14-4"
    assert wait.inputs["needsFile"] is True
    assert "clientKeyPem" in wait.secret_inputs or wait.inputs["clientKeyPem"] is None


def test_a_rancher_upgrade_backs_up_first_then_upgrades():
    p = plan(backup_run(), backup_run({"rancher-ha:rancherVersion": "2.15.0"}))
    assert p.errors == [] and p.collisions == []
    steps = {(s.op, s.name): s for s in p.steps if s.op != "same" and s.phase == "update"}
    backup, wait, rancher = (steps[("replace", "rancher-backups-before-upgrade")],
                             steps[("replace", "rancher-backups-before-upgrade-completed")],
                             steps[("update", "rancher")])
    assert "metadata" in backup.replace_reasons or any("metadata" in r for r in backup.replace_reasons)
    assert backup.seq < wait.seq < rancher.seq
    # The operator line moves with the minor, before the backup is taken.
    assert steps[("update", "rancher-backup")].seq < backup.seq
    assert_engine_waits(backup_run({"rancher-ha:rancherVersion": "2.15.0"}), [
        (RELEASE, "rancher-backup"), (BACKUP, "rancher-backups-before-upgrade"),
        (WAIT, "rancher-backups-before-upgrade-completed"), (RELEASE, "rancher"),
    ])
    # The backup of 2.14.4 is kept: its object is deleted only after everything else, and
    # deleting a one-time Backup object leaves its file in S3.
    assert [s.phase for s in p.steps if s.op == "delete" and s.name == "rancher-backups-before-upgrade"] == ["delete"]


def test_without_a_version_change_nothing_waits_again():
    p = plan(backup_run(), backup_run({"rancher-ha:rancherBackupRetention": 100}))
    assert [(s.op, s.name) for s in p.steps if s.op != "same"] == [("update", "rancher-backups-scheduled")]


# -- the object wait ---------------------------------------------------------------------
def test_completion_is_ready_completed_and_for_a_backup_its_file():
    from components.providers.api_gate_provider import completion

    midway = {"status": {"conditions": [{"type": "Ready", "status": "True"}]}}
    assert completion(midway, needs_file=True) == (False, "no status yet")
    assert completion(midway, needs_file=False) == (False, "no status yet")  # set before the upload/restore ends
    retrying = {"status": {"conditions": [{"type": "Reconciling", "status": "True", "message": "bucket not found"},
                                          {"type": "Ready", "status": "Unknown", "message": "Retrying"}]}}
    assert completion(retrying, needs_file=True) == (False, "bucket not found")
    done = {"status": {"conditions": [{"type": "Ready", "status": "True", "message": "Completed"},
                                      {"type": "Uploaded", "status": "True"}], "filename": "f.tar.gz.enc"}}
    assert completion(done, needs_file=True) == (True, "Completed")
    restore_done = {"status": {"conditions": [{"type": "Ready", "status": "True", "message": "Completed"}]}}
    assert completion(restore_done, needs_file=False)[0]
    assert not completion(restore_done, needs_file=True)[0]


def test_the_wait_is_bounded_and_says_what_the_operator_said(monkeypatch):
    from components.providers import api_gate_provider as provider

    answers = [(404, b"{}"), (200, json.dumps({"status": {"conditions": [
        {"type": "Reconciling", "status": "True", "message": "Access Denied"}]}}).encode())]
    monkeypatch.setattr(provider, "ssl_context", lambda probe: None)
    monkeypatch.setattr(provider, "get", lambda probe, context, path, timeout: answers[min(len(calls), 1)])
    calls: list[float] = []
    now = [0.0]

    def sleep(seconds):
        calls.append(seconds)
        now[0] += seconds

    probe = provider.ApiProbe("https://lb:6443", "rancher.example.com", "ca", "cert", "key")
    with pytest.raises(provider.ObjectNotReady, match="Access Denied"):
        provider.wait_for_object(probe, "/apis/x", True, timeout_seconds=30, clock=lambda: now[0], sleep=sleep)
    assert sum(calls) == 30
    answers[1] = (200, json.dumps({"status": {"filename": "f", "conditions": [
        {"type": "Ready", "status": "True", "message": "Completed"}]}}).encode())
    calls.clear()
    assert provider.wait_for_object(probe, "/apis/x", True, timeout_seconds=30, clock=lambda: now[0], sleep=sleep) == {
        "filename": "f", "conditions": [{"type": "Ready", "status": "True", "message": "Completed"}]}


def test_a_new_backup_name_makes_the_wait_wait_again():
    from components.providers.api_gate_provider import ObjectReadyProvider

    diff = ObjectReadyProvider().diff("id", {"path": "/a", "url": "u"}, {"path": "/b", "url": "u"})
    assert diff.replaces == ["path"] and diff.delete_before_replace is False
    assert ObjectReadyProvider().diff("id", {"path": "/a", "url": "u"}, {"path": "/a", "url": "u"}).changes is False


# -- restore into a new stack -------------------------------------------------------------
def test_a_restore_runs_after_the_operator_and_before_rancher():
    result = backup_run(RESTORE_SETTINGS)
    restore = one(result, RESTORE, "rancher-backups-restore")
    restored = one(result, WAIT, "rancher-backups-restore-completed")
    operator = releases(result)["rancher-backup"]
    key = one(result, SECRET, "rancher-backups-restore-encryption-config")
    assert operator.urn in restore.dependencies and key.urn in restore.dependencies
    assert restore.urn in restored.dependencies
    assert restored.urn in releases(result)["rancher"].dependencies
    # Our own backups start once the restored Rancher objects are in.
    for name in ("rancher-backups-scheduled", "rancher-backups-before-upgrade"):
        assert restored.urn in one(result, BACKUP, name).dependencies
    assert restored.inputs["path"] == f"/apis/resources.cattle.io/v1/restores/{restore.inputs['metadata']['name']}"


def test_the_restore_reads_the_old_stacks_file_with_its_key_and_prunes_nothing():
    result = backup_run(RESTORE_SETTINGS)
    restore = one(result, RESTORE, "rancher-backups-restore")
    assert restore.inputs["spec"] == {
        "backupFilename": OLD_FILE,
        "prune": False,
        "encryptionConfigSecretName": "rancher-ha-dev-restore-encryption",
        "storageLocation": {"s3": {
            "bucketName": "rancher-ha-prod-etcd-0a1b2c3d", "folder": "rancher-backups/prod", "region": "eu-west-1",
            "endpoint": "s3.eu-west-1.amazonaws.com",
            "credentialSecretName": "rancher-ha-dev-backup-s3", "credentialSecretNamespace": "cattle-resources-system",
        }},
    }
    key = one(result, SECRET, "rancher-backups-restore-encryption-config")
    config = yaml.safe_load(key.inputs["stringData"]["encryption-provider-config.yaml"])
    assert config["resources"][0]["providers"][0]["secretbox"]["keys"][0]["secret"] == OLD_KEY
    assert any(path.startswith("stringData") for path in key.secret_inputs)
    assert OLD_KEY not in "\n".join(result.logs)


def test_the_same_rancher_version_and_hostname_are_installed_after_the_restore():
    result = backup_run(RESTORE_SETTINGS)
    rancher = releases(result)["rancher"]
    assert rancher.inputs["version"] == "2.14.4"
    assert rancher.inputs["values"]["hostname"] == "rancher.dev.example.com"


def test_an_unencrypted_restore_from_the_stacks_own_folder():
    result = backup_run({"rancher-ha:restoreFromBackup": "rancher-ha-dev-1-2026-12-07T06-00-00Z.tar.gz"})
    restore = one(result, RESTORE, "rancher-backups-restore")
    assert restore.inputs["spec"] == {"backupFilename": "rancher-ha-dev-1-2026-12-07T06-00-00Z.tar.gz", "prune": False}
    assert [r for r in result.of_type(SECRET) if r.name == "rancher-backups-restore-encryption-config"] == []


def test_the_first_preview_of_a_restoring_stack_passes_with_unknowns():
    result = backup_run(RESTORE_SETTINGS, preview=True)
    assert one(result, RESTORE, "rancher-backups-restore")
    assert one(result, WAIT, "rancher-backups-restore-completed")
    assert "rancher-backup" in releases(result)


def test_a_new_restoring_stack_plans_operator_restore_then_rancher():
    p = plan(None, backup_run(RESTORE_SETTINGS))
    assert p.errors == []
    seq = {s.name: s.seq for s in p.steps if s.op == "create"}
    assert seq["rancher-backup-crd"] < seq["rancher-backup"] < seq["rancher-backups-restore"] \
        < seq["rancher-backups-restore-completed"] < seq["rancher"]
    assert_engine_waits(backup_run(RESTORE_SETTINGS), [
        (RELEASE, "rancher-backup-crd"), (RELEASE, "rancher-backup"), (RESTORE, "rancher-backups-restore"),
        (WAIT, "rancher-backups-restore-completed"), (RELEASE, "rancher"),
    ])


def test_admitting_a_backup_reader_changes_only_the_bucket_and_key_policies():
    """docs/disaster-recovery.md "Move to a new stack", the old stack's steps: admitting the
    new stack's backup user, and removing it after the move, touch the two policies only."""
    readers = {"rancher-ha:rancherBackupReaders": ["arn:aws:iam::123456789012:user/rancher-ha/green/*"]}
    policies = {("update", "aws:kms/key:Key", "etcd-snapshots-key"),
                ("update", "aws:s3/bucketPolicy:BucketPolicy", "etcd-snapshots-policy")}
    for old, new in ((backup_run(), backup_run(readers)), (backup_run(readers), backup_run())):
        p = plan(old, new)
        assert not p.refused, p.errors
        assert {(s.op, s.type, s.name) for s in p.steps if s.op != "same"} == policies
        assert {c.path for s in p.steps if s.op == "update" for c in s.changes} == {"policy"}


# -- DNS take-over -------------------------------------------------------------------------
@pytest.mark.parametrize("take_over", [False, True])
def test_taking_over_the_old_stacks_names_is_explicit(take_over):
    result = run({"rancher-ha:takeOverDnsRecords": take_over})
    records = {r.name: r for r in result.of_type(RECORD)}
    for name in ("rancher-dns-rancher", "rancher-dns-api"):
        assert records[name].inputs.get("allowOverwrite") is (True if take_over else None), name


# -- the CI deploy role can manage the backup user ----------------------------------------
def test_the_deploy_role_may_create_rotate_and_delete_the_backup_user_only():
    from test_ci_roles import BOUNDED, DEPLOY, SITE

    result = backup_run()
    user = one(result, "aws:iam/user:User", "rancher-backups-user")
    arn = f"arn:aws:iam::{SITE.account}:user{user.inputs['path']}{user.name}-1a2b3c4"  # auto-named
    lifecycle = ["iam:CreateUser", "iam:TagUser", "iam:GetUser", "iam:PutUserPolicy", "iam:GetUserPolicy",
                 "iam:CreateAccessKey", "iam:ListAccessKeys", "iam:DeleteAccessKey", "iam:DeleteUserPolicy",
                 "iam:ListUserPolicies", "iam:ListAttachedUserPolicies", "iam:ListGroupsForUser", "iam:DeleteUser"]
    # Created and written only under the workload permissions boundary (iamPermissionsBoundaryArn).
    assert {a: evaluate(DEPLOY, Request(a, arn, BOUNDED)) for a in lifecycle} == {a: "Allow" for a in lifecycle}
    assert evaluate(DEPLOY, Request("iam:CreateUser", arn)) != "Allow"
    # A user of the previous release (path /rancher-ha/) moves to its stack's path in place:
    # iam:UpdateUser, authorised on the user's ARN before and after the move.
    assert user.inputs["path"] == "/rancher-ha/dev/"
    before = f"arn:aws:iam::{SITE.account}:user/rancher-ha/{user.name}-1a2b3c4"
    assert {r: evaluate(DEPLOY, Request("iam:UpdateUser", r)) for r in (before, arn)} == {before: "Allow", arn: "Allow"}
    elsewhere = f"arn:aws:iam::{SITE.account}:user/admin"
    assert evaluate(DEPLOY, Request("iam:UpdateUser", elsewhere)) == "ImplicitDeny"
    assert evaluate(DEPLOY, Request("iam:CreateAccessKey", elsewhere)) == "ImplicitDeny"


def test_the_program_writes_its_rancher_tls_secrets_after_the_restore():
    """rancher-resource-set-full takes every Secret in the cattle-* namespaces but those
    labelled owner=helm and three named ones (charts/rancher-backup/files/default/
    sensitive-resourceset-contents/rancher.yaml), and a Restore updates an object that
    exists (pkg/controllers/restore/controller.go restoreResource: Get, then Update);
    rancher/backup-restore-operator v11.0.0, commit cf5cd48503df9770731fae194f5cdda3e5ff5b78,
    the same in v10.0.8, 1e4997cadccbb266e1e6f376ab246570b98c30c4. So tls-rancher-ingress
    and tls-ca of the OLD stack would overwrite this stack's if written before the restore:
    the program writes its own after it (and a copy the restore made stops the `up` with
    AlreadyExists instead of serving the old stack's certificate)."""
    from rendering.rancher_values import INGRESS_SECRET_NAME, PRIVATE_CA_SECRET_NAME

    result = backup_run({**RESTORE_SETTINGS, "rancher-ha:tlsSource": "generated"})
    restored = one(result, WAIT, "rancher-backups-restore-completed")
    secrets = {r.inputs["metadata"]["name"]: r for r in result.of_type(SECRET)
               if r.inputs["metadata"]["name"] in (INGRESS_SECRET_NAME, PRIVATE_CA_SECRET_NAME)}
    assert set(secrets) == {INGRESS_SECRET_NAME, PRIVATE_CA_SECRET_NAME}
    for name, secret in secrets.items():
        assert restored.urn in secret.dependencies, name
