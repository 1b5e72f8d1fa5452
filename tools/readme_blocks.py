"""Generated blocks of README.md: the text between `<!-- NAME:start -->` and `<!-- NAME:end -->`.

A generator owns each block; its test compares the block with the generator's output,
and `rewrite` puts the output back, leaving the rest of the README as it is.
"""

from __future__ import annotations

from typing import Callable, Mapping


def block(readme: str, name: str, indent: str = "") -> str:
    """The text of block `name` (its end marker stands on a line of its own, after `indent`)."""
    start, end = f"<!-- {name}:start -->\n", f"\n{indent}<!-- {name}:end -->"
    if start not in readme or end not in readme:
        raise ValueError(f"README.md lost its {name} markers")
    begin = readme.index(start) + len(start)
    return readme[begin : readme.index(end, begin) + 1]


def rewrite(readme: str, generators: Mapping[str, Callable[[], str]], indent: str = "") -> str:
    """The README with every block replaced by its generator's output."""
    for name, generate in generators.items():
        begin = readme.index(f"<!-- {name}:start -->\n") + len(f"<!-- {name}:start -->\n")
        readme = readme[:begin] + generate() + readme[begin + len(block(readme, name, indent)) :]
    return readme
