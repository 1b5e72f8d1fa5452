"""Pickle a provider as its module's source, executed when unpickled.

`pickle`/`dill` store `(builtins.eval, ("<expression>",))` from `__reduce__`: no code
object, no reference to this project's modules. The expression compiles the source
and instantiates the class, in whatever Python the Pulumi provider host runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence


def loader_expression(source: str, class_name: str, preludes: Sequence[str] = ()) -> str:
    """An expression that turns the source into a module (registered in sys.modules, which
    dataclasses need) and returns an instance of `class_name` from it.

    `preludes`: sources of sibling modules the provider shares code with, run first in the
    same module namespace (the provider imports them relatively, falling back on ImportError
    to the names the preludes defined)."""
    module = f"rancher_ha_provider_{class_name.lower()}"
    runs = "".join(
        " exec(compile(" + repr(text) + ", " + repr(f"<rancher-ha {class_name}>") + ", 'exec'), module.__dict__),"
        for text in (*preludes, source)
    )
    return (
        "(lambda sys, module: (sys.modules.setdefault(module.__name__, module),"
        + runs
        + " getattr(module, " + repr(class_name) + ")())[" + str(len(preludes) + 2) + "])"
        "(__import__('sys'), __import__('types').ModuleType(" + repr(module) + "))"
    )


def source_of(module_file: str) -> str:
    return Path(module_file).read_text()
