"""The pull-request comment: the render's base-to-head diff (tools/render_diff.py)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tools.render_diff import diff_markdown, file_diffs

REPO_ROOT = Path(__file__).resolve().parents[1]


def _git(cwd: Path, *args: str) -> str:
    env_args = ["-c", "user.name=test", "-c", "user.email=test@example.com", "-c", "commit.gpgsign=false"]
    return subprocess.run(["git", *env_args, *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def _copy_of_the_working_tree(target: Path) -> Path:
    """The tracked files as they are now (edits included), as the first commit of a new repo."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO_ROOT, check=True, capture_output=True).stdout.decode().split("\0")
    for name in filter(None, files):
        source = REPO_ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    _git(target, "init", "-q")
    _git(target, "add", "-A")
    _git(target, "commit", "-qm", "base")
    return target


def test_a_one_line_template_change_is_a_one_line_diff_in_the_pull_request_comment(tmp_path):
    repo = _copy_of_the_working_tree(tmp_path / "repo")
    template = repo / "rendering" / "templates" / "ssm.sh.j2"
    template.write_text(template.read_text().replace("--max-time 20", "--max-time 30"))
    _git(repo, "commit", "-qam", "head: one line")
    done = subprocess.run([sys.executable, "-m", "tools.render", "--diff", "HEAD~1", "dev", "--out", str(tmp_path / "out")],
                          cwd=repo, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    patch = (tmp_path / "out" / "diff.patch").read_text()
    changed = [line for line in patch.splitlines() if line[:1] in "+-" and line[:3] not in ("+++", "---")]
    servers = sorted({line.split("/")[3] for line in patch.splitlines() if line.startswith("+++ ")})
    assert servers == ["rancher-server-0", "rancher-server-1"], patch[:2000]
    assert len(changed) == 2 * len(servers) and all(("--max-time 20" in l) if l[0] == "-" else ("--max-time 30" in l) for l in changed)
    comment = (tmp_path / "out" / "diff.md").read_text()
    assert "| dev | 2 |" in comment and "usr/local/sbin/rancher-ha-bootstrap" in comment
    # The README shows this very diff as what a reviewer sees.
    readme = (REPO_ROOT / "README.md").read_text().split("### What a reviewer sees in a pull request", 1)[1]
    shown = readme.split("```diff\n", 1)[1].split("```", 1)[0]
    first_file = patch.split("--- a/dev/machines/rancher-server-1/", 1)[0]
    assert shown == first_file


def test_no_change_says_so(tmp_path):
    (tmp_path / "a" / "x").mkdir(parents=True)
    (tmp_path / "a" / "x" / "f").write_text("same\n")
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    markdown, patch = diff_markdown("main", {"dev": file_diffs(tmp_path / "a", tmp_path / "b", "dev")})
    assert "No rendered file changes" in markdown and patch == ""


def test_a_comment_over_its_limit_names_the_files_it_cut(tmp_path):
    for side, text in (("a", "one\n"), ("b", "two\n")):
        for name in ("f1", "f2"):
            (tmp_path / side / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / side / name).write_text(text * 50)
    diffs = {"dev": file_diffs(tmp_path / "a", tmp_path / "b", "dev")}
    markdown, patch = diff_markdown("main", diffs, limit=700)
    assert "`f2`: diff cut" in markdown and "b/dev/f2" in patch and len(markdown) < 700 + 600
