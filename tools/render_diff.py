"""What a pull request changes in the render: the base revision's render against the working
tree's, as one unified diff per changed file, for every stack the change touches.

  python -m tools.render --diff BASE_REF [<stack> ...] [--all] [--out DIR]

writes DIR/diff.md (a pull-request comment: a summary table, then the diffs, cut to fit a
comment) and DIR/diff.patch (all of it). The base revision renders in a temporary worktree
(tools/plan.base_tree) with its own tools.render, so files it laid out differently show as
such. Both sides are offline renders: mock values are marked `«mock:…»` on each side.
"""

from __future__ import annotations

import difflib
import subprocess
import sys
import tempfile
from pathlib import Path

# GitHub refuses comments over 65,536 characters; keep room for the plan beside it.
COMMENT_LIMIT = 40_000


def _tree(folder: Path) -> dict[str, str]:
    if not folder.is_dir():
        return {}
    return {str(p.relative_to(folder)): p.read_text(errors="replace") for p in sorted(folder.rglob("*")) if p.is_file()}


def file_diffs(old: Path, new: Path, label: str) -> list[tuple[str, str]]:
    """(path, unified diff) for every file that differs between two render folders."""
    before, after = _tree(old), _tree(new)
    found = []
    for name in sorted(set(before) | set(after)):
        if before.get(name) == after.get(name):
            continue
        diff = "".join(
            difflib.unified_diff(
                (before.get(name) or "").splitlines(keepends=True),
                (after.get(name) or "").splitlines(keepends=True),
                f"a/{label}/{name}" if name in before else "/dev/null",
                f"b/{label}/{name}" if name in after else "/dev/null",
            )
        )
        found.append((name, diff if diff.endswith("\n") else diff + "\n"))
    return found


def diff_markdown(base_ref: str, diffs: dict[str, list[tuple[str, str]]], limit: int = COMMENT_LIMIT) -> tuple[str, str]:
    """(comment markdown, full patch)."""
    patch = "".join(d for stack in sorted(diffs) for _, d in diffs[stack])
    lines = [f"# Offline render: `{base_ref}` → this change", ""]
    changed = {stack: found for stack, found in diffs.items() if found}
    if not changed:
        return "\n".join(lines + ["No rendered file changes in any stack.", ""]), patch
    lines += ["| stack | files changed |", "|---|---|"]
    lines += [f"| {stack} | {len(found)} |" for stack, found in sorted(changed.items())]
    lines.append("")
    budget = limit
    for stack, found in sorted(changed.items()):
        lines += [f"## Stack `{stack}`", ""]
        for name, diff in found:
            block = f"<details><summary><code>{name}</code></summary>\n\n```diff\n{diff.rstrip()}\n```\n</details>\n"
            if len(block) > budget:
                lines.append(f"- `{name}`: diff cut (the comment is full); see diff.patch in the render artifact")
                continue
            budget -= len(block)
            lines.append(block)
        lines.append("")
    return "\n".join(lines), patch


def render_diff(base_ref: str, stacks: list[str], out: Path, python: str = sys.executable) -> tuple[str, bool]:
    from tools.plan import base_tree
    from tools.render import REPO_ROOT

    with tempfile.TemporaryDirectory(prefix="rancher-ha-render-diff-") as tmp:
        base_out, head_out = Path(tmp) / "base", Path(tmp) / "head"
        with base_tree(base_ref) as tree:
            available = [s for s in stacks if (tree / "stacks" / f"Pulumi.{s}.yaml").exists()]
            if available:
                subprocess.run([python, "-m", "tools.render", *available, "--out", str(base_out)], cwd=tree, capture_output=True, text=True)
        head = subprocess.run([python, "-m", "tools.render", *stacks, "--out", str(head_out)], cwd=REPO_ROOT, capture_output=True, text=True)
        diffs = {stack: file_diffs(base_out / stack, head_out / stack, stack) for stack in stacks}
    markdown, patch = diff_markdown(base_ref, diffs)
    if head.returncode != 0:
        markdown += f"\n**The working tree cannot render every stack:**\n\n```\n{head.stderr.strip()[-4000:]}\n```\n"
    out.mkdir(parents=True, exist_ok=True)
    (out / "diff.md").write_text(markdown)
    (out / "diff.patch").write_text(patch)
    return markdown, head.returncode != 0
