"""The program reads as stages (README "Architecture"): `app.deploy` only wires the identity
lock and the three stages, and every function of a stage fits on one page."""

from __future__ import annotations

import ast
import inspect
import textwrap

import pytest

import app
from stages import cluster, edge, in_cluster

PAGE = 110  # lines
STAGES = (edge.network_and_edge, cluster.cluster, in_cluster.in_cluster)
STAGE_MODULES = (app, edge, cluster, in_cluster)


def _functions(module):
    return [f for _, f in inspect.getmembers(module, inspect.isfunction) if f.__module__ == module.__name__]


@pytest.mark.parametrize("function", [f for m in STAGE_MODULES for f in _functions(m)],
                         ids=lambda f: f"{f.__module__}.{f.__name__}")
def test_every_function_of_the_program_fits_on_a_page(function):
    lines = len(inspect.getsourcelines(function)[0])
    assert lines <= PAGE, f"{function.__module__}.{function.__name__} is {lines} lines (a page is {PAGE}): split it"


def test_deploy_only_wires_the_lock_the_stages_and_the_outputs():
    tree = ast.parse(textwrap.dedent(inspect.getsource(app.deploy)))
    body = tree.body[0].body
    called = [node.func.id for node in ast.walk(tree) if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)]
    assert called == ["identity_lock", *(stage.__name__ for stage in STAGES), "stack_outputs"]
    # Nothing but one call per line: no component is made in deploy itself.
    assert len(body) == len(called)
    assert all(isinstance(statement.value, ast.Call) for statement in body)  # type: ignore[attr-defined]


def test_each_stage_returns_a_frozen_dataclass_for_the_next():
    import dataclasses
    import typing

    for stage in STAGES:
        returned = typing.get_type_hints(stage)["return"]
        assert dataclasses.is_dataclass(returned), stage.__name__
        assert returned.__dataclass_params__.frozen, stage.__name__  # type: ignore[attr-defined]
