"""The suite notices when a claim it leans on breaks (tools/mutation_check.py): each mutation
breaks one claim in a copy of the tree, and the tests named for it must fail there."""

from __future__ import annotations

import pytest

from tools.mutation_check import MUTATIONS, Mutation, apply, copy_working_tree, run


@pytest.mark.parametrize("mutation", MUTATIONS, ids=[m.name for m in MUTATIONS])
def test_the_suite_kills_the_mutation(mutation: Mutation):
    verdict, tail = run(mutation)
    assert verdict == "killed", f"{mutation.name} {verdict}: {mutation.claim}\n{tail}"


def test_a_mutation_is_applied_to_a_copy_never_to_the_work_tree(tmp_path):
    mutation = MUTATIONS[0]
    from tools.mutation_check import REPO_ROOT

    before = (REPO_ROOT / mutation.path).read_text()
    tree = copy_working_tree(tmp_path / "tree")
    assert apply(mutation, tree)
    assert (tree / mutation.path).read_text() != before and (REPO_ROOT / mutation.path).read_text() == before


def test_a_mutation_whose_code_is_gone_is_reported_stale(tmp_path):
    stale = Mutation(name="x", claim="x", path="app.py", find="no such text in app.py", replace="", tests=())
    assert run(stale)[0] == "stale"
