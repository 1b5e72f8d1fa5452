"""Ship dynamic-provider code by value.

Pulumi pickles a dynamic provider with dill and unpickles it in a separate provider
process. dill pickles classes and functions of importable modules *by reference*, so
that process would need this project on its sys.path, which depends on how and where
the engine starts it. Marking the provider code as `__main__` makes dill embed it by
value; it then imports only the standard library and the Pulumi SDK.
"""

from __future__ import annotations

import inspect


def ship_by_value(*objects: object) -> None:
    for obj in objects:
        obj.__module__ = "__main__"
        if isinstance(obj, type):
            for attribute in vars(obj).values():
                if inspect.isfunction(attribute):
                    attribute.__module__ = "__main__"
