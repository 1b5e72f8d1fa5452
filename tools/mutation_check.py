"""Mutation check: break the code the way an audit would, and require the suite to notice.

Each mutation names one claim the project leans on, the code that makes it true, a small
edit that breaks it, and the tests that must then FAIL. The check copies the working tree
(tracked and new files, edits included) into a temporary folder, applies the edit there
(never to the work tree), runs those tests, and reports a mutation as

  killed    the tests failed: they guard the claim
  survived  the tests passed: they cannot fail for this break (the finding an audit made)
  stale     the code to break is no longer there exactly once: update the mutation

  python -m tools.mutation_check [NAME ...]       (exit 1 unless every mutation is killed)

tests/test_mutations.py runs every mutation in the suite.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_S = 900


@dataclass(frozen=True)
class Mutation:
    name: str
    claim: str
    path: str
    find: str
    replace: str
    tests: tuple[str, ...]


MUTATIONS: tuple[Mutation, ...] = (
    Mutation(
        name="nlb-target-groups-not-replaced-with-the-nlb",
        claim="a new NLB gets new target groups (a target group serves one load balancer at a time)",
        path="components/nlb.py",
        find="opts=child(self, replace_with=[balancer]),",
        replace="opts=child(self),",
        tests=("tests/test_lifecycle.py::test_replacing_the_load_balancer_keeps_every_server_and_tls_name[rke2]",),
    ),
    Mutation(
        name="nginx-reads-its-certificate-from-the-wrong-parameter",
        claim="the NGINX instance's first boot installs its certificate from the parameter the program writes",
        path="rendering/templates/nginx-refresh.sh.j2",
        find='fetch_parameter tls.crt "$STAGE/tls.crt" 0644',
        replace='fetch_parameter nginx/tls.crt "$STAGE/tls.crt" 0644',
        tests=("tests/test_first_boot.py::test_nginx_instance_boots_and_its_config_passes_real_nginx[stack:staging]",),
    ),
    Mutation(
        name="nginx-group-without-instance-refresh",
        claim="a new NGINX launch template rolls the instance (the audit deleted instance_refresh: all green)",
        path="components/nginx_lb.py",
        find="instance_refresh=aws.autoscaling.GroupInstanceRefreshArgs(",
        replace="instance_refresh=None and aws.autoscaling.GroupInstanceRefreshArgs(",
        tests=("tests/test_lifecycle.py::test_a_launch_template_update_shows_that_nginx_is_rolled",),
    ),
    Mutation(
        name="in-cluster-resources-not-deleted-with-the-cluster",
        claim="destroy skips helm uninstall of a cluster being deleted (deleted_with the provider)",
        path="components/rancher.py",
        find="depends_on=[args.gate, *extra], deleted_with=args.provider",
        replace="depends_on=[args.gate, *extra]",
        tests=("tests/test_plan_engine.py::test_destroying_the_dev_stack_is_scheduled_and_checked",),
    ),
    Mutation(
        name="rancher-upgrades-before-its-backup-completes",
        claim="the Rancher release waits for the pre-upgrade backup (and a restore) to complete",
        path="stages/in_cluster.py",
        find="rancher_after=[dns, upgrades.wait, *(backups.before_rancher if backups else [])],",
        replace="rancher_after=[dns, upgrades.wait],",
        tests=("tests/test_backups.py::test_a_rancher_upgrade_backs_up_first_then_upgrades",
               "tests/test_backups.py::test_a_new_restoring_stack_plans_operator_restore_then_rancher"),
    ),
    Mutation(
        name="dns-records-overwrite-another-stacks-silently",
        claim="only takeOverDnsRecords lets the stack overwrite existing Route53 records",
        path="components/dns.py",
        find='overwrite: _Overwrite = {"allow_overwrite": True} if take_over else {}',
        replace='overwrite: _Overwrite = {"allow_overwrite": True}',
        tests=("tests/test_backups.py::test_taking_over_the_old_stacks_names_is_explicit[False]",),
    ),
    Mutation(
        name="joiners-do-not-wait-for-the-registration-address",
        claim="a joining server waits for a running server's /ping before it starts (the audit disabled it: all green)",
        path="rendering/templates/node-bootstrap.sh.j2",
        find='if [ "$JOINING" = 1 ]; then\n  JOIN_ATTEMPTS=',
        replace='if false; then\n  JOIN_ATTEMPTS=',
        tests=("tests/test_first_boot.py::test_no_stub_crashed_and_joiners_reached_the_registration_address[shape:rke2-nlb]",),
    ),
    Mutation(
        name="nginx-may-move-its-address-onto-a-server",
        claim="the NGINX role moves the Elastic IP only onto this stack's NGINX instances (the audit's test took its expectation from the code)",
        path="components/nginx_lb.py",
        find=', f"aws:ResourceTag/{ROLE_TAG}": NGINX_ROLE}}',
        replace='}}',
        tests=("tests/test_iam_seams.py::test_association_statements_allow_exactly_the_stack_address_onto_its_nginx",),
    ),
    Mutation(
        name="the-upgrade-plan-does-not-wait-for-the-version-check",
        claim="no upgrade Plan is created or changed before the check that no server runs a newer release",
        path="components/upgrades.py",
        find="opts=in_cluster(crd, controller, no_server_ahead),",
        replace="opts=in_cluster(crd, controller),",
        tests=("tests/test_upgrades.py::test_the_plan_waits_for_the_check_and_the_check_for_the_gate",),
    ),
    Mutation(
        name="bucket-admins-follow-the-deployer",
        claim="listed snapshotBucketAdmins keep the bucket whoever runs `pulumi up` (review finding 5)",
        path="components/snapshot_bucket.py",
        find="return [*admin_arns, *(arn for arn in callers if arn not in admin_arns)]",
        replace="return callers",
        tests=("tests/test_iam_seams.py::test_listed_admins_are_never_locked_out_and_no_deployer_locks_itself_out",),
    ),
    Mutation(
        name="upgrade-plan-two-servers-at-once",
        claim="a Kubernetes upgrade restarts one server at a time, so 3 etcd members keep quorum (issue 18, the rehearsal)",
        path="components/upgrades.py",
        find='"concurrency": 1,',
        replace='"concurrency": 2,',
        tests=("tests/test_day2_upgrades.py::test_an_upgrade_reaches_every_server_one_at_a_time_with_quorum_and_rancher[rke2-nlb-patch]",),
    ),
    Mutation(
        name="upgrade-plan-without-prepare",
        claim="a server is restarted only when every server is Ready, even if the controller sees a Job complete at the SIGTERM (issue 18)",
        path="components/upgrades.py",
        find='"prepare": every_server_ready(),',
        replace='',
        tests=("tests/test_day2_upgrades.py::test_a_patch_upgrade_keeps_quorum_and_rancher_even_if_a_job_is_seen_complete_at_the_sigterm[rke2-nlb]",),
    ),
    Mutation(
        name="restore-beside-a-live-old-server",
        claim="the first server restores an etcd snapshot only when no old server answers at the registration name (review finding 6)",
        path="rendering/templates/node-bootstrap.sh.j2",
        find='registration_silent() { ! registration_answers "$1"; }',
        replace='registration_silent() { true; }',
        tests=("tests/test_boot_script.py::test_a_restore_is_refused_while_a_server_of_the_old_cluster_still_answers",),
    ),
    Mutation(
        name="every-server-restores-the-etcd-snapshot",
        claim="after a whole-cluster loss only the first server restores the snapshot and the others join it: one cluster (the recovery rehearsal)",
        path="components/cluster_nodes.py",
        find="etcd_restore_snapshot=args.etcd_restore_snapshot if (first and rke2) else None,",
        replace="etcd_restore_snapshot=args.etcd_restore_snapshot if rke2 else None,",
        tests=("tests/test_recovery_rehearsal.py::test_a_whole_cluster_restore_brings_back_one_cluster_of_the_new_servers",),
    ),
    Mutation(
        name="member-delete-waits-for-lost-servers",
        claim="an old server's ClusterMember delete after a restore waits only for the servers Ready when it began, not the snapshot's other old Nodes",
        path="components/providers/cluster_member_provider.py",
        find="n is not node and is_ready(n)]",
        replace="n is not node]",
        tests=("tests/test_day2_membership.py::test_after_a_restore_an_old_server_leaves_though_the_other_old_nodes_stay_not_ready",),
    ),
    Mutation(
        name="backup-readers-read-the-whole-bucket",
        claim="rancherBackupReaders (a new stack's backup user) read the Rancher backup folder only, never an etcd snapshot",
        path="components/snapshot_bucket.py",
        find='"NotResource": backups,',
        replace='"NotResource": f"{bucket_arn}/*",',
        tests=("tests/test_iam_seams.py::test_a_backup_reader_cannot_read_an_etcd_snapshot_of_the_old_stack",),
    ),
    Mutation(
        name="restore-overwrites-the-stacks-tls-secrets",
        claim="the program writes tls-rancher-ingress and tls-ca after a rancher-backup restore (review finding 6)",
        path="components/rancher.py",
        find="opts=in_cluster(*args.secrets_after),",
        replace="opts=in_cluster(),",
        tests=("tests/test_backups.py::test_the_program_writes_its_rancher_tls_secrets_after_the_restore",),
    ),
    Mutation(
        name="boundary-name-passed-as-is",
        claim="a boundary named by policy name reaches IAM as the ARN the CI deploy roles require",
        path="components/instance_role.py",
        find='    if boundary is None or boundary.startswith("arn:"):\n        return boundary\n',
        replace='    if True:\n        return boundary\n',
        tests=("tests/test_ci_roles.py::test_the_shipped_stacks_can_be_deployed_by_their_ci_roles",),
    ),
    Mutation(
        name="upgrade-plan-without-post-complete-delay",
        claim="the next server's upgrade Job waits until a restarting server is back or seen NotReady (a Node looks Ready for the grace period)",
        path="components/upgrades.py",
        find='            "postCompleteDelay": POST_COMPLETE_DELAY,\n',
        replace='',
        tests=("tests/test_day2_upgrades.py::test_a_patch_upgrade_keeps_quorum_even_if_a_restarting_node_still_looks_ready",),
    ),
    Mutation(
        name="member-keeps-the-removal-code-it-was-created-with",
        claim="a stack of the previous release removes servers with this release's code (a dynamic delete runs the stored provider)",
        path="components/providers/cluster_member_provider.py",
        find="for k in (*UPDATING_INPUTS, PROVIDER_CODE))",
        replace="for k in UPDATING_INPUTS)",
        tests=("tests/test_lifecycle.py::test_every_cluster_member_of_the_previous_release_takes_this_releases_removal_code",),
    ),
)


def copy_working_tree(target: Path, source: Path = REPO_ROOT) -> Path:
    """The tracked and new (not ignored) files as they are now, edits included."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=source,
                            check=True, capture_output=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        path = source / name
        if path.is_file() and not path.is_symlink():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target / name)
    # The test tools the suite installs (helm, actionlint, other Pythons) are reused, not copied.
    tools = source / ".tools"
    if tools.exists() and not (target / ".tools").exists():
        (target / ".tools").symlink_to(tools.resolve())
    return target


def apply(mutation: Mutation, tree: Path) -> bool:
    """Apply the edit in `tree`; False when the code to break is not there exactly once."""
    path = tree / mutation.path
    text = path.read_text() if path.is_file() else ""
    if text.count(mutation.find) != 1:
        return False
    path.write_text(text.replace(mutation.find, mutation.replace))
    return True


def run(mutation: Mutation, python: str = sys.executable) -> tuple[str, str]:
    """(verdict, pytest's last lines)."""
    with tempfile.TemporaryDirectory(prefix="rancher-ha-mutant-") as tmp:
        tree = copy_working_tree(Path(tmp) / "tree")
        if not apply(mutation, tree):
            return "stale", f"{mutation.path}: the text to break is not there exactly once"
        done = subprocess.run([python, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *mutation.tests],
                              cwd=tree, capture_output=True, text=True, timeout=TIMEOUT_S)
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        # pytest: 0 all passed, 1 some failed; anything else (errors, nothing collected) proves nothing.
        verdict = {0: "survived", 1: "killed"}.get(done.returncode, f"error (pytest exit {done.returncode})")
        return verdict, tail


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.mutation_check", description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="mutations to run (default: all)")
    args = parser.parse_args(argv)
    chosen = [m for m in MUTATIONS if not args.names or m.name in args.names]
    failed = False
    for mutation in chosen:
        verdict, tail = run(mutation)
        print(f"{verdict:9} {mutation.name}: {mutation.claim}")
        if verdict != "killed":
            failed = True
            print("    " + tail.replace("\n", "\n    "))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
