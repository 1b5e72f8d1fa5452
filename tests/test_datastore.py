"""The K3s datastore: RDS MySQL 8.4, private, encrypted, backed up."""

from conftest import cached_run


def test_rds_properties(dev_run):
    (database,) = dev_run.of_type("aws:rds/instance:Instance")
    inputs = database.inputs
    assert inputs["engine"] == "mysql" and inputs["engineVersion"] == "8.4"
    assert inputs["publiclyAccessible"] is False
    assert inputs["storageEncrypted"] is True
    assert inputs["backupRetentionPeriod"] == 7
    assert inputs["deletionProtection"] is False and inputs["skipFinalSnapshot"] is True
    assert inputs["instanceClass"] == "db.t4g.small"
    assert database.protect is False
    (group,) = dev_run.of_type("aws:rds/parameterGroup:ParameterGroup")
    assert group.inputs["family"] == "mysql8.4"
    assert [(p["name"], p["value"]) for p in group.inputs["parameters"]] == [("require_secure_transport", "1")]


def test_prod_protects_the_datastore():
    run = cached_run(stack="prod")
    (database,) = run.of_type("aws:rds/instance:Instance")
    assert database.inputs["deletionProtection"] is True
    assert database.inputs["skipFinalSnapshot"] is False
    # A generated suffix, new with every datastore: a second deletion never collides.
    (suffix,) = [r for r in run.of_type("random:index/randomId:RandomId") if r.name.endswith("-final-snapshot-suffix")]
    assert database.inputs["finalSnapshotIdentifier"] == f"rancher-ha-prod-k3s-final-{suffix.outputs['hex']}"
    assert database.inputs["multiAz"] is True
    assert database.protect is True


def test_dsn_shape(dev_run):
    from components.datastore import mysql_dsn

    assert mysql_dsn("k3s", "pw", "db.example", 3306, "k3s") == "mysql://k3s:pw@tcp(db.example:3306)/k3s"
    (dsn,) = [p for p in dev_run.of_type("aws:ssm/parameter:Parameter") if p.inputs["name"].endswith("/datastore-endpoint")]
    (database,) = dev_run.of_type("aws:rds/instance:Instance")
    assert dsn.inputs["value"].startswith(f"mysql://k3s:")
    assert dsn.inputs["value"].endswith(f"@tcp({database.outputs['address']}:3306)/k3s")
    assert "tls=" not in dsn.inputs["value"]


def test_rke2_has_no_datastore():
    run = cached_run({"rancher-ha:distribution": "rke2"})
    assert run.of_type("aws:rds/instance:Instance") == []


def test_rds_changes_apply_now_outside_prod_and_in_the_window_in_prod(dev_run):
    (database,) = dev_run.of_type("aws:rds/instance:Instance")
    assert database.inputs["applyImmediately"] is True
    (database,) = cached_run(stack="prod").of_type("aws:rds/instance:Instance")
    assert database.inputs["applyImmediately"] is False
