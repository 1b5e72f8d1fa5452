"""A user data change in the plan: a unified diff of the files the machine receives, and
what the change does to a running machine (offline/machine_files.py, offline/plan.py)."""

from __future__ import annotations

import base64
import re

from conftest import NGINX_L7, RKE2, run
from offline import machine_files
from tools.plan import program_dynamic_diffs
from offline.plan import plan_update

SCHEDULE = {"rancher-ha:etcdSnapshotSchedule": "0 */6 * * *"}
NEW_SCHEDULE = {"rancher-ha:etcdSnapshotSchedule": "0 */4 * * *"}


def _diff_blocks(markdown: str) -> dict[str, str]:
    """machine name -> (heading, diff) from the plan's user data section."""
    section = markdown.split("### User data changes", 1)
    assert len(section) == 2, "the plan shows no user data section"
    return dict(re.findall(r"^#### (.+?)\n\n```diff\n(.*?)\n```", section[1], re.M | re.S))


def test_a_server_user_data_edit_shows_as_a_one_line_diff_of_the_decoded_file_and_says_it_is_ignored():
    old, new = run({**RKE2, **SCHEDULE}), run({**RKE2, **NEW_SCHEDULE})
    markdown = plan_update(old, new, dynamic_diffs=program_dynamic_diffs()).to_markdown()
    blocks = _diff_blocks(markdown)
    servers = sorted(r.name for r in new.registrations if r.type == "aws:ec2/instance:Instance" and "-server-" in r.name)
    assert sorted(heading.split(":", 1)[0] for heading in blocks) == servers
    for heading, diff in blocks.items():
        assert "ignored on the running machine (ignoreChanges); takes effect on a replacement" in heading
        changes = [line for line in diff.splitlines() if line[:1] in "+-" and line[:3] not in ("+++", "---")]
        assert changes == ["-etcd-snapshot-schedule-cron: 0 */6 * * *", "+etcd-snapshot-schedule-cron: 0 */4 * * *"], diff
        assert "a/rancher-server-" in diff and "/etc/rancher/rancher-ha/config.base.yaml" in diff
    # The table no longer shows a hash of 18,000 characters of escaped YAML.
    assert not re.search(r"userData`: `[^`]*sha256", markdown)


def test_a_launch_template_user_data_edit_says_new_machines_boot_with_it(monkeypatch):
    from rendering import cloud_init

    old = run(NGINX_L7)
    monkeypatch.setattr(cloud_init, "NGINX_REFRESH_INTERVAL", "7min")
    new = run(NGINX_L7)
    markdown = plan_update(old, new, dynamic_diffs=program_dynamic_diffs()).to_markdown()
    assert "`userData`: changed, see its diff below" in markdown
    blocks = {heading: diff for heading, diff in _diff_blocks(markdown).items() if heading.startswith("nginx-lb")}
    assert len(blocks) == 1, list(_diff_blocks(markdown))
    heading, diff = next(iter(blocks.items()))
    assert "a new launch template version: machines launched from now on boot with it" in heading
    assert "/etc/systemd/system/rancher-ha-nginx-refresh.timer" in diff
    assert "-OnBootSec=5min\n-OnUnitActiveSec=5min\n+OnBootSec=7min\n+OnUnitActiveSec=7min\n" in diff


def test_launch_template_user_data_is_decoded_before_it_is_split():
    text = "#cloud-config\nwrite_files:\n- path: /usr/local/sbin/x\n  content: |\n    #!/bin/bash\n    echo one\nruncmd:\n- [/usr/local/sbin/x]\n"
    other = text.replace("echo one", "echo two")
    encoded, encoded_other = (base64.b64encode(t.encode()).decode() for t in (text, other))
    split = machine_files.split(encoded)
    assert split is not None and split.files == {"/usr/local/sbin/x": "#!/bin/bash\necho one\n"}
    diff = machine_files.unified_diff(encoded, encoded_other, "nginx-lb-instance")
    assert "-echo one\n+echo two\n" in diff and "b/nginx-lb-instance/usr/local/sbin/x" in diff


def test_write_files_encodings_are_decoded_as_cloud_init_does():
    import gzip

    payload = "#!/bin/sh\nexit 0\n"
    gz = base64.b64encode(gzip.compress(payload.encode())).decode()
    b64 = base64.b64encode(payload.encode()).decode()
    text = ("#cloud-config\nwrite_files:\n"
            f"- path: /a\n  encoding: gz+b64\n  content: {gz}\n"
            f"- path: /b\n  encoding: b64\n  content: {b64}\n")
    split = machine_files.split(text)
    assert split.files == {"/a": payload, "/b": payload}
    assert all("encoding" not in entry for entry in split.layout["write_files"])
