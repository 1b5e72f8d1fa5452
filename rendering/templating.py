"""One Jinja2 environment for every generated file.

StrictUndefined turns a missing template value into an error at render time instead
of an empty string in a boot script; `shquote` is the only way values enter shell.
"""

from __future__ import annotations

import shlex
from functools import lru_cache
from pathlib import Path

import jinja2

from . import polls

TEMPLATE_DIR = Path(__file__).parent / "templates"


def _shquote(value: object) -> str:
    return shlex.quote(str(value))


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    # jinja2 leaves Environment.filters and .globals unannotated (inferred from dict literals).
    env.filters["shquote"] = _shquote  # pyright: ignore[reportUnknownMemberType]
    # Every template sees the same poll cadences the benchmark models.
    env.globals["polls"] = polls  # pyright: ignore[reportUnknownMemberType]
    return env


def render(template: str, **values: object) -> str:
    return environment().get_template(template).render(**values)
