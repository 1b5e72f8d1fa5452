#!/usr/bin/env python3
"""Extract the real `k3s server` / `rke2 server` flag lists from upstream Go source.

A server's config.yaml keys are exactly its flag names (see rendering/server_flags.py),
so the checker needs the flag set of the pinned releases. This script reads the
upstream source (never a binary, never the network) and writes one JSON data file per
release into reference/upstream/server-flags/.

How it reads the source
-----------------------
* K3s: `pkg/cli/cmds/*.go` at a commit of a git directory that holds k3s-io/k3s
  history (k3s-io/k3s itself is too large to fetch here; the fork `dereknola/k3s`
  carries the same upstream commits, and a git commit id names the same tree in any
  clone). `ServerFlags` in server.go is resolved element by element: inline
  `&cli.XFlag{...}` literals and named flag variables from any file of the package
  that the Linux build compiles (`//go:build` lines and `_windows.go`-style suffixes
  are honoured). Alternatively `--k3s-source-dir` takes a directory that holds
  `pkg/cli/cmds/*.go` saved by hand.
* RKE2: at a tag of a rancher/rke2 git directory. The k3s commit is read from rke2's
  `go.mod` (a `replace` for github.com/k3s-io/k3s wins over `require`; the last 12
  hex digits of the pseudo-version are the commit). RKE2's server flag set is
  k3s's `ServerFlags` at that commit, filtered through the `K3SFlagSet` map handed to
  `mustCmdFromK3S(cmds.NewServerCommand(...), ...)` in `pkg/cli/cmds/server.go`
  (copy/hide keep a flag, drop removes it), plus `serverFlag` and `commonFlag`, as
  `NewServerCommand` appends them. RKE2 panics at start when the map and k3s's list
  differ; this script refuses to write a file in the same case.

Flag kinds come from the Go types: StringSliceFlag -> list, BoolFlag -> bool,
StringFlag -> string, IntFlag/Int64Flag/UintFlag/Uint64Flag -> int,
DurationFlag -> duration, Float64Flag -> float. Any other type is an error.

Re-running
----------
    # bring the sources (bare git directories) with the session's fetch tool:
    #   fetch github:rancher/rke2     -> /work/.mirror/rancher+rke2/repo
    #   fetch github:dereknola/k3s    -> /work/.mirror/dereknola+k3s/repo
    .venv/bin/python tools/extract_server_flags.py all \\
        --rke2-git-dir /work/.mirror/rancher+rke2/repo \\
        --k3s-git-dir /work/.mirror/dereknola+k3s/repo

    # one release at a time:
    .venv/bin/python tools/extract_server_flags.py rke2 --rke2-git-dir ... \\
        --tag v1.36.0+rke2r1 --k3s-git-dir ...
    .venv/bin/python tools/extract_server_flags.py k3s --k3s-git-dir ... \\
        --version v1.34.1+k3s1 --commit 24fc436e6ea59c56ebc37727baa4e6c9a201ee01
    .venv/bin/python tools/extract_server_flags.py k3s --k3s-source-dir saved/ \\
        --version v1.34.1+k3s1 --commit <commit the files were read at>

`all` writes the files listed in PINS below. The K3s tags are not in any clone that
can be fetched here, so each K3s release is pinned to a commit with the reason
recorded in the data file (`source.tag_note`); see
reference/upstream/server-flags/README.md.

Standard library only (plus git on PATH).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Protocol

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO_ROOT / "reference" / "upstream" / "server-flags"

K3S_MODULE = "github.com/k3s-io/k3s"
RKE2_MODULE = "github.com/rancher/rke2"

# What `all` writes. K3s release tags are not present in the fetchable fork, so each
# K3s release names the commit used and why its pkg/cli/cmds equals the tag's.
PINS = {
    "rke2": ["v1.34.1+rke2r1", "v1.36.0+rke2r1"],
    "k3s": [
        {
            "version": "v1.34.1+k3s1",
            "commit": "24fc436e6ea59c56ebc37727baa4e6c9a201ee01",
            "tag_note": (
                "commit 'Update to v1.34.1 (#12896)' (2025-09-10) on release-1.34. The tag "
                "v1.34.1+k3s1 itself is not in the fetched clone; pkg/cli/cmds and "
                "pkg/configfilearg are unchanged on release-1.34 from its branch point "
                "4d1f1affcb3e (2025-09-05) until 7113b2d3c (2025-10-08, usage text only), and the "
                "extracted flag set (names, kinds, aliases) is the same at every later "
                "release-1.34 commit checked, up to June 2026, so every commit the tag can "
                "be on has this flag set. rke2 v1.34.1+rke2r1 pins 857412ae5891 "
                "(main, 2025-09-05), whose server flags are identical."
            ),
        },
        {
            "version": "v1.36.0+k3s1",
            "commit": "7bbbf7c9b258b049ec8d29e26556caecafa9f880",
            "tag_note": (
                "the k3s commit rke2 v1.36.0+rke2r1 pins in go.mod (2026-05-07, release-1.36 "
                "history). The tag v1.36.0+k3s1 itself is not in the fetched clone; "
                "pkg/cli/cmds and pkg/configfilearg are unchanged between 'Bump upstream to "
                "1.36' (4cdb882eb, 2026-04-23) and 'Update to v1.36.1' (9da548c2b, "
                "2026-05-13), the range the v1.36.0 tag must be in."
            ),
        },
    ],
}

KIND_BY_TYPE = {
    "StringSliceFlag": "list",
    "BoolFlag": "bool",
    "BoolTFlag": "bool",  # urfave/cli v1 only
    "StringFlag": "string",
    "PathFlag": "string",
    "IntFlag": "int",
    "Int64Flag": "int",
    "UintFlag": "int",
    "Uint64Flag": "int",
    "DurationFlag": "duration",
    "Float64Flag": "float",
}

# Build context for `//go:build` lines: servers are Linux with cgo.
BUILD_TAGS_TRUE = {"linux", "cgo", "unix", "amd64", "gc"}


class ExtractError(RuntimeError):
    pass


# --------------------------------------------------------------------------- sources


class Source(Protocol):
    def list_dir(self, path: str) -> list[str]: ...

    def read(self, path: str) -> str: ...


@dataclass
class GitSource:
    git_dir: str
    rev: str

    def _git(self, *args: str) -> str:
        result = subprocess.run(
            ["git", f"--git-dir={self.git_dir}", *args], capture_output=True, text=True
        )
        if result.returncode != 0:
            raise ExtractError(f"git {' '.join(args)}: {result.stderr.strip()}")
        return result.stdout

    def commit(self) -> str:
        return self._git("rev-parse", f"{self.rev}^{{commit}}").strip()

    def commit_date(self) -> str:
        return self._git("log", "-1", "--format=%cI", self.rev).strip()

    def list_dir(self, path: str) -> list[str]:
        out = self._git("ls-tree", "--name-only", self.rev, path.rstrip("/") + "/")
        return [line.rsplit("/", 1)[-1] for line in out.splitlines() if line]

    def read(self, path: str) -> str:
        return self._git("show", f"{self.rev}:{path}")

    def read_bytes(self, path: str) -> bytes:
        result = subprocess.run(["git", f"--git-dir={self.git_dir}", "show", f"{self.rev}:{path}"], capture_output=True)
        if result.returncode != 0:
            raise ExtractError(f"git show {self.rev}:{path}: {result.stderr.decode().strip()}")
        return result.stdout


@dataclass
class DirSource:
    root: Path

    def list_dir(self, path: str) -> list[str]:
        return sorted(p.name for p in (self.root / path).iterdir() if p.is_file())

    def read(self, path: str) -> str:
        return (self.root / path).read_text()

    def read_bytes(self, path: str) -> bytes:
        return (self.root / path).read_bytes()


def file_digests(sources: dict[str, "GitSource | DirSource"], files: list[str]) -> dict[str, str]:
    """sha256 of each upstream file the flags came from (`<prefix>:<path>` or `<path>`),
    so anyone holding a copy of the source can check it is the one the data came from."""
    digests = {}
    for entry in files:
        prefix, _, path = entry.rpartition(":")
        digests[entry] = hashlib.sha256(sources[prefix].read_bytes(path)).hexdigest()
    return digests


# --------------------------------------------------------------------------- Go lexing


@dataclass
class Tok:
    kind: str  # ident | string | number | punct
    value: str


_TOKEN_RE = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<lcomment>//[^\n]*)
  | (?P<bcomment>/\*.*?\*/)
  | (?P<raw>`[^`]*`)
  | (?P<string>"(?:[^"\\\n]|\\.)*")
  | (?P<rune>'(?:[^'\\\n]|\\.)*')
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<number>[0-9][0-9A-Za-z_.]*)
  | (?P<punct>\.\.\.|:=|&&|\|\||<-|\+\+|--|[-+*/%&|^<>=!:;,.(){}\[\]~])
    """,
    re.S | re.X,
)


def _unquote(literal: str) -> str:
    if literal.startswith("`"):
        return literal[1:-1]
    # Go interpreted strings use the same escapes as JSON for what appears in flag names.
    return json.loads(literal)


_SEMICOLON_AFTER_KEYWORDS = {"break", "continue", "fallthrough", "return"}


def tokenize(text: str) -> list[Tok]:
    """Go tokens, with the semicolons Go's lexer inserts at line ends."""
    tokens: list[Tok] = []
    pos = 0

    def newline() -> None:
        if not tokens:
            return
        last = tokens[-1]
        if (
            last.kind in ("string", "rune", "number")
            or (last.kind == "ident" and (last.value in _SEMICOLON_AFTER_KEYWORDS or last.value not in _GO_KEYWORDS))
            or (last.kind == "punct" and last.value in (")", "]", "}", "++", "--"))
        ):
            tokens.append(Tok("punct", ";"))

    while pos < len(text):
        match = _TOKEN_RE.match(text, pos)
        if not match:
            raise ExtractError(f"cannot tokenize Go source near {text[pos:pos + 40]!r}")
        pos = match.end()
        kind = match.lastgroup
        if kind in ("ws", "bcomment"):
            if "\n" in match.group():
                newline()
            continue
        if kind == "lcomment":
            continue  # the newline after it is whitespace
        if kind in ("raw", "string"):
            tokens.append(Tok("string", _unquote(match.group())))
        elif kind == "rune":
            tokens.append(Tok("rune", match.group()))
        else:
            tokens.append(Tok(kind, match.group()))
    newline()
    return tokens


_GO_KEYWORDS = {
    "break", "case", "chan", "const", "continue", "default", "defer", "else", "fallthrough", "for",
    "func", "go", "goto", "if", "import", "interface", "map", "package", "range", "return", "select",
    "struct", "switch", "type", "var",
}


def build_constraint_ok(text: str, filename: str) -> bool:
    if filename.endswith("_test.go") or not filename.endswith(".go"):
        return False
    stem = filename[:-3]
    for goos in ("windows", "darwin", "freebsd", "openbsd", "netbsd", "solaris", "plan9", "js", "wasip1"):
        if stem.endswith("_" + goos) or f"_{goos}_" in stem:
            return False
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("package "):
            break
        if line.startswith("//go:build "):
            expr = line[len("//go:build "):]
            python = re.sub(r"[A-Za-z0-9_.]+", lambda m: str(m.group() in BUILD_TAGS_TRUE), expr)
            python = python.replace("&&", " and ").replace("||", " or ").replace("!", " not ")
            return bool(eval(python, {"__builtins__": {}}, {}))  # noqa: S307 - True/False/and/or/not only
    return True


# --------------------------------------------------------------------------- Go package model


@dataclass
class FlagDef:
    go_type: str
    name: str
    aliases: list[str]
    hidden: bool
    file: str

    @property
    def names(self) -> list[str]:
        return [self.name, *self.aliases]


@dataclass
class Package:
    """The parts of one Go package this script needs: string constants, named flag
    variables and `[]cli.Flag{...}` lists (kept as raw token spans)."""

    module_path: str
    dir: str
    files: list[str] = field(default_factory=list)
    imports: dict[str, dict[str, str]] = field(default_factory=dict)  # file -> alias -> path
    consts: dict[str, tuple[str, list[Tok]]] = field(default_factory=dict)  # name -> (file, expr tokens)
    flag_vars: dict[str, tuple[str, list[Tok]]] = field(default_factory=dict)
    flag_lists: dict[str, tuple[str, list[Tok]]] = field(default_factory=dict)
    tokens: dict[str, list[Tok]] = field(default_factory=dict)


def _match_brace(tokens: list[Tok], start: int) -> int:
    """Index of the token closing the bracket at tokens[start]."""
    pairs = {"{": "}", "(": ")", "[": "]"}
    depth = 0
    for i in range(start, len(tokens)):
        value = tokens[i].value if tokens[i].kind == "punct" else None
        if value in pairs:
            depth += 1
        elif value in ("}", ")", "]"):
            depth -= 1
            if depth == 0:
                return i
    raise ExtractError("unbalanced brackets in Go source")


def _split_top(tokens: list[Tok], sep: str = ",") -> list[list[Tok]]:
    """Split a token list at depth-0 separators."""
    parts: list[list[Tok]] = [[]]
    depth = 0
    for tok in tokens:
        if tok.kind == "punct" and tok.value in "{([":
            depth += 1
        elif tok.kind == "punct" and tok.value in "})]":
            depth -= 1
        if depth == 0 and tok.kind == "punct" and tok.value == sep:
            parts.append([])
            continue
        parts[-1].append(tok)
    return [p for p in parts if p]


def _parse_imports(tokens: list[Tok]) -> dict[str, str]:
    imports: dict[str, str] = {}

    def add(alias: Optional[str], path: str) -> None:
        imports[alias or path.rstrip("/").split("/")[-1].replace("-", "")] = path

    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok.kind == "ident" and tok.value == "import":
            if tokens[i + 1].value == "(":
                end = _match_brace(tokens, i + 1)
                specs = _split_top(tokens[i + 2:end], ";")
                i = end
            else:
                end = i + 1
                while tokens[end].value != ";":
                    end += 1
                specs = [tokens[i + 1:end]]
                i = end
            for spec in specs:
                if len(spec) == 1 and spec[0].kind == "string":
                    add(None, spec[0].value)
                elif len(spec) == 2 and spec[1].kind == "string":
                    add(spec[0].value, spec[1].value)
        i += 1
    # Major-version suffixes: github.com/urfave/cli/v2 is package "cli".
    for alias, path in list(imports.items()):
        if re.fullmatch(r"v\d+", alias):
            imports.pop(alias)
            imports[path.rstrip("/").split("/")[-2]] = path
    return imports


def _flag_literal_at(tokens: list[Tok], i: int) -> Optional[tuple[str, int, int]]:
    """If tokens[i:] is `[&] cli . XFlag {`, return (type, open-brace index, close index)."""
    j = i
    if tokens[j].kind == "punct" and tokens[j].value == "&":
        j += 1
    if (
        j + 3 < len(tokens)
        and tokens[j].kind == "ident"
        and tokens[j].value == "cli"
        and tokens[j + 1].value == "."
        and tokens[j + 2].kind == "ident"
        and tokens[j + 2].value.endswith("Flag")
        and tokens[j + 3].value == "{"
    ):
        close = _match_brace(tokens, j + 3)
        return tokens[j + 2].value, j + 3, close
    return None


def load_package(source: Source, module_path: str, pkg_dir: str) -> Package:
    package = Package(module_path=module_path, dir=pkg_dir)
    for filename in source.list_dir(pkg_dir):
        path = f"{pkg_dir.rstrip('/')}/{filename}"
        if not filename.endswith(".go"):
            continue
        text = source.read(path)
        if not build_constraint_ok(text, filename):
            continue
        tokens = tokenize(text)
        package.files.append(path)
        package.tokens[path] = tokens
        package.imports[path] = _parse_imports(tokens)
        _scan_declarations(package, path, tokens)
    if not package.files:
        raise ExtractError(f"no Go files for the Linux build in {pkg_dir}")
    return package


def _scan_declarations(package: Package, path: str, tokens: list[Tok]) -> None:
    """Record `Name [Type] = <expr>` specs of top-level var/const declarations."""
    i = 0
    depth = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok.kind == "punct" and tok.value in "{([":
            depth += 1
        elif tok.kind == "punct" and tok.value in "})]":
            depth -= 1
        elif depth == 0 and tok.kind == "ident" and tok.value in ("var", "const"):
            if tokens[i + 1].value == "(":
                end = _match_brace(tokens, i + 1)
                for spec in _split_top(tokens[i + 2:end], ";"):
                    _record_spec(package, path, spec)
                i = end + 1
                continue
            end = i + 1
            level = 0
            while end < len(tokens) and not (level == 0 and tokens[end].value == ";"):
                if tokens[end].kind == "punct" and tokens[end].value in "{([":
                    level += 1
                elif tokens[end].kind == "punct" and tokens[end].value in "})]":
                    level -= 1
                end += 1
            _record_spec(package, path, tokens[i + 1:end])
            i = end
            continue
        i += 1


def _record_spec(package: Package, path: str, spec: list[Tok]) -> None:
    if len(spec) < 3 or spec[0].kind != "ident":
        return
    if spec[1].value == "=":
        expr = spec[2:]
    elif spec[1].kind == "ident" and len(spec) > 3 and spec[2].value == "=":
        expr = spec[3:]  # Name Type = expr
    else:
        return  # Name Type, or a, b = ...
    name = spec[0].value
    literal = _flag_literal_at(expr, 0)
    if literal and literal[2] == len(expr) - 1:
        package.flag_vars[name] = (path, expr)
    elif (
        len(expr) > 5
        and [t.value for t in expr[:6]] == ["[", "]", "cli", ".", "Flag", "{"]
        and _match_brace(expr, 5) == len(expr) - 1
    ):
        package.flag_lists[name] = (path, expr[5:])
    else:
        package.consts[name] = (path, expr)


# --------------------------------------------------------------------------- evaluation


class Resolver:
    """Evaluates constant string expressions and flag references across packages."""

    def __init__(self, sources: dict[str, Source]):
        self.sources = sources  # module path -> Source
        self.packages: dict[str, Package] = {}

    def package(self, import_path: str) -> Package:
        if import_path not in self.packages:
            for module, source in self.sources.items():
                if import_path == module or import_path.startswith(module + "/"):
                    rel = import_path[len(module):].lstrip("/")
                    self.packages[import_path] = load_package(source, module, rel)
                    break
            else:
                raise ExtractError(f"no source for Go package {import_path}")
        return self.packages[import_path]

    def _import(self, pkg: Package, file: str, alias: str) -> str:
        path = pkg.imports[file].get(alias)
        if path is None:
            raise ExtractError(f"{file}: unknown package {alias!r}")
        return path

    def string(self, pkg: Package, file: str, expr: list[Tok]) -> str:
        """A constant string expression: literals, constants and `+`."""
        out = []
        for part in _split_top(expr, "+"):
            if len(part) == 1 and part[0].kind == "string":
                out.append(part[0].value)
            elif len(part) == 1 and part[0].kind == "ident":
                name = part[0].value
                if name not in pkg.consts:
                    raise ExtractError(f"{file}: {name} is not a string constant of {pkg.dir}")
                cfile, cexpr = pkg.consts[name]
                out.append(self.string(pkg, cfile, cexpr))
            elif len(part) == 3 and part[0].kind == "ident" and part[1].value == "." and part[2].kind == "ident":
                other = self.package(self._import(pkg, file, part[0].value))
                if part[2].value not in other.consts:
                    raise ExtractError(f"{part[0].value}.{part[2].value} is not a string constant")
                cfile, cexpr = other.consts[part[2].value]
                out.append(self.string(other, cfile, cexpr))
            else:
                raise ExtractError(f"{file}: not a constant string: {' '.join(t.value for t in part)}")
        return "".join(out)

    def string_list(self, pkg: Package, file: str, expr: list[Tok]) -> list[str]:
        # []string{"a", "b"}
        if not (expr[0].value == "[" and expr[1].value == "]" and expr[2].value == "string" and expr[3].value == "{"):
            raise ExtractError(f"{file}: not a []string literal")
        close = _match_brace(expr, 3)
        return [self.string(pkg, file, item) for item in _split_top(expr[4:close])]

    def fields(self, body: list[Tok]) -> dict[str, list[Tok]]:
        result = {}
        for item in _split_top(body):
            if len(item) >= 3 and item[0].kind == "ident" and item[1].value == ":":
                result[item[0].value] = item[2:]
        return result

    def flag_literal(self, pkg: Package, file: str, expr: list[Tok]) -> FlagDef:
        literal = _flag_literal_at(expr, 0)
        if literal is None:
            raise ExtractError(f"{file}: not a flag literal")
        go_type, open_i, close_i = literal
        fields = self.fields(expr[open_i + 1:close_i])
        if "Name" not in fields:
            raise ExtractError(f"{file}: cli.{go_type} without a Name")
        raw_name = self.string(pkg, file, fields["Name"])
        # urfave/cli v1 spells aliases inside Name: "data-dir,d".
        names = [n.strip() for n in raw_name.split(",")] if "Aliases" not in fields else [raw_name]
        aliases = names[1:]
        if "Aliases" in fields:
            aliases += self.string_list(pkg, file, fields["Aliases"])
        hidden = False
        if "Hidden" in fields:
            value = " ".join(t.value for t in fields["Hidden"])
            if value not in ("true", "false"):
                raise ExtractError(f"{file}: Hidden of {raw_name} is not a literal bool")
            hidden = value == "true"
        return FlagDef(go_type=go_type, name=names[0], aliases=aliases, hidden=hidden, file=file)

    def flag_ref(self, pkg: Package, file: str, expr: list[Tok]) -> FlagDef:
        if _flag_literal_at(expr, 0):
            return self.flag_literal(pkg, file, expr)
        if expr and expr[0].value == "&" and len(expr) > 1:
            expr = expr[1:]  # &SELinuxFlag for a value-typed var
        if len(expr) == 1 and expr[0].kind == "ident":
            name = expr[0].value
            if name not in pkg.flag_vars:
                raise ExtractError(f"{file}: {name} is not a flag variable of {pkg.dir}")
            vfile, vexpr = pkg.flag_vars[name]
            return self.flag_literal(pkg, vfile, vexpr)
        if len(expr) == 3 and expr[1].value == ".":
            other = self.package(self._import(pkg, file, expr[0].value))
            return self.flag_ref(other, other.files[0], [expr[2]])
        raise ExtractError(f"{file}: cannot resolve flag {' '.join(t.value for t in expr)}")

    def flag_list(self, pkg: Package, name: str) -> list[FlagDef]:
        if name not in pkg.flag_lists:
            raise ExtractError(f"no []cli.Flag named {name} in {pkg.dir}")
        file, body = pkg.flag_lists[name]
        close = _match_brace(body, 0)
        return [self.flag_ref(pkg, file, item) for item in _split_top(body[1:close])]


# --------------------------------------------------------------------------- k3s


def flags_json(flags: list[FlagDef], extra: Optional[dict[str, dict]] = None) -> dict[str, dict]:
    result: dict[str, dict] = {}
    for flag in flags:
        if flag.go_type not in KIND_BY_TYPE:
            raise ExtractError(f"flag {flag.name}: unsupported type cli.{flag.go_type}")
        if flag.name in result:
            raise ExtractError(f"flag {flag.name} defined twice")
        entry = {"kind": KIND_BY_TYPE[flag.go_type], "go_type": f"cli.{flag.go_type}", "aliases": flag.aliases}
        if flag.hidden:
            entry["hidden"] = True
        entry.update((extra or {}).get(flag.name, {}))
        result[flag.name] = entry
    return dict(sorted(result.items()))


def k3s_server_flags(source: Source) -> list[FlagDef]:
    resolver = Resolver({K3S_MODULE: source})
    pkg = resolver.package(f"{K3S_MODULE}/pkg/cli/cmds")
    return resolver.flag_list(pkg, "ServerFlags")


def check_parser_shape(source: Source) -> None:
    """Refuse to run if the config-file parser no longer works as rendering/server_flags.py
    models it (list -> one --key=item per item, scalar -> --key=value, unknown keys
    dropped with a warning, `key+` appends)."""
    text = source.read("pkg/configfilearg/parser.go")
    needles = [
        'result = append(result, prefix+k+"="+convert.ToString(v))',
        'result = append(result, prefix+k+"="+str)',
        'logrus.Warnf("Unknown flag %s found in config.yaml, skipping',
        'isAppend := strings.HasSuffix(k, "+")',
        "for _, s := range f.Names()",
    ]
    missing = [n for n in needles if n not in text]
    if missing:
        raise ExtractError(f"pkg/configfilearg/parser.go changed; re-read it: missing {missing}")


def k3s_document(source: Source, version: str, commit: str, repo_note: str, tag_note: str) -> dict:
    check_parser_shape(source)
    flags = k3s_server_flags(source)
    files = sorted({f.file for f in flags} | {"pkg/configfilearg/parser.go"})
    return {
        "source": {
            "distribution": "k3s",
            "version": version,
            "repo": "k3s-io/k3s",
            "commit": commit,
            "read_from": repo_note,
            "tag_note": tag_note,
            "files": files,
            "file_sha256": file_digests({"": source}, files),
            "list": "pkg/cli/cmds/server.go: ServerFlags",
            "extracted_by": "tools/extract_server_flags.py",
        },
        "flags": flags_json(flags),
    }


# --------------------------------------------------------------------------- rke2


def k3s_pin_from_go_mod(go_mod: str) -> tuple[str, str, str]:
    """(module path, version, short commit) of github.com/k3s-io/k3s in rke2's go.mod."""
    replace = re.search(r"^\s*(?:replace\s+)?github\.com/k3s-io/k3s\s+=>\s+(\S+)\s+(\S+)", go_mod, re.M)
    if replace:
        module, version = replace.group(1), replace.group(2)
    else:
        require = re.search(r"^\s*(?:require\s+)?github\.com/k3s-io/k3s\s+(v\S+)", go_mod, re.M)
        if not require:
            raise ExtractError("github.com/k3s-io/k3s not found in go.mod")
        module, version = K3S_MODULE, require.group(1)
    pseudo = re.search(r"[-.]\d{14}-([0-9a-f]{12})$", version)
    if not pseudo:
        raise ExtractError(f"k3s version {version} in go.mod is not a pseudo-version; map the tag by hand")
    return module, version, pseudo.group(1)


def _k3s_flag_set(resolver: Resolver, pkg: Package) -> dict[str, dict]:
    """The K3SFlagSet literal passed with cmds.NewServerCommand to mustCmdFromK3S."""
    options: dict[str, dict] = {}
    # named options: copyFlag = &K3SFlagOption{}, dropFlag = &K3SFlagOption{Drop: true}, ...
    named = {}
    for name, (file, expr) in pkg.consts.items():
        if len(expr) >= 3 and expr[0].value == "&" and expr[1].value == "K3SFlagOption":
            named[name] = _option_fields(resolver, expr[2:])
    for file in pkg.files:
        tokens = pkg.tokens[file]
        for i in range(len(tokens) - 6):
            if tokens[i].value == "mustCmdFromK3S" and tokens[i + 1].value == "(":
                call_end = _match_brace(tokens, i + 1)
                args = _split_top(tokens[i + 2:call_end])
                first = " ".join(t.value for t in args[0])
                if not first.startswith("cmds . NewServerCommand"):
                    continue
                second = args[1]
                if second[0].value != "K3SFlagSet" or second[1].value != "{":
                    raise ExtractError("mustCmdFromK3S: second argument is not a K3SFlagSet literal")
                close = _match_brace(second, 1)
                for entry in _split_top(second[2:close]):
                    if entry[0].kind != "string" or entry[1].value != ":":
                        raise ExtractError(f"unexpected K3SFlagSet entry {entry[0].value}")
                    value = entry[2:]
                    if len(value) == 1 and value[0].kind == "ident":
                        if value[0].value == "nil":
                            opt = {}
                        elif value[0].value in named:
                            opt = named[value[0].value]
                        else:
                            raise ExtractError(f"unknown K3SFlagOption {value[0].value}")
                    else:
                        opt = _option_fields(resolver, value)
                    options[entry[0].value] = opt
                return options
    raise ExtractError("no mustCmdFromK3S(cmds.NewServerCommand(...), K3SFlagSet{...}) found")


def _option_fields(resolver: Resolver, expr: list[Tok]) -> dict:
    if expr[0].value == "&":
        expr = expr[1:]
    if expr[0].value == "K3SFlagOption":
        expr = expr[1:]
    if expr[0].value != "{":
        raise ExtractError("K3SFlagOption literal expected")
    close = _match_brace(expr, 0)
    fields = resolver.fields(expr[1:close])
    return {
        key.lower(): True
        for key in ("Drop", "Hide", "Ignore")
        if key in fields and " ".join(t.value for t in fields[key]) == "true"
    } | ({"custom": sorted(k for k in fields if k in ("Usage", "Default"))} if {"Usage", "Default"} & set(fields) else {})


def _parse_name(flag: FlagDef) -> str:
    # RKE2's parseName: the first name longer than one character, else the first.
    for name in flag.names:
        if len(name.strip()) > 1:
            return name.strip()
    return flag.names[0].strip()


def rke2_document(rke2_git_dir: str, tag: str, k3s_git_dir: str) -> tuple[dict, str]:
    rke2 = GitSource(rke2_git_dir, tag)
    rke2_commit = rke2.commit()
    go_mod = rke2.read("go.mod")
    module, k3s_version, k3s_short = k3s_pin_from_go_mod(go_mod)
    if module != K3S_MODULE:
        raise ExtractError(f"rke2 {tag} replaces k3s with {module}; fetch that repository")
    k3s = GitSource(k3s_git_dir, k3s_short)
    k3s_commit = k3s.commit()

    resolver = Resolver({RKE2_MODULE: rke2, K3S_MODULE: k3s})
    check_parser_shape(k3s)
    k3s_flags = resolver.flag_list(resolver.package(f"{K3S_MODULE}/pkg/cli/cmds"), "ServerFlags")
    rke2_pkg = resolver.package(f"{RKE2_MODULE}/pkg/cli/cmds")

    server_go = rke2.read("pkg/cli/cmds/server.go")
    for needle in ("cmd.Flags = append(cmd.Flags, serverFlag...)", "cmd.Flags = append(cmd.Flags, commonFlag...)",
                   "configfilearg.DefaultParser.ValidFlags[cmd.Name] = cmd.Flags"):
        if needle not in server_go:
            raise ExtractError(f"rke2 {tag} NewServerCommand changed: {needle!r} not found; re-read it")

    options = _k3s_flag_set(resolver, rke2_pkg)
    # Same check RKE2 runs at start (commandFromK3S): it panics when these differ.
    k3s_names = {_parse_name(f) for f in k3s_flags}
    missing = sorted(k3s_names - set(options))
    unknown = sorted(n for n, o in options.items() if n not in k3s_names and not o.get("ignore"))
    if missing or unknown:
        raise ExtractError(
            f"rke2 {tag} K3SFlagSet and k3s {k3s_commit[:12]} ServerFlags differ "
            f"(RKE2 would panic): missing options {missing}, options for unknown flags {unknown}"
        )

    kept: list[FlagDef] = []
    extra: dict[str, dict] = {}
    dropped = []
    for flag in k3s_flags:
        opt = options[_parse_name(flag)]
        if opt.get("drop"):
            dropped.append(flag.name)
            continue
        if opt.get("hide"):
            flag.hidden = True
        kept.append(flag)
        extra[flag.name] = {"origin": "k3s"}
    own = resolver.flag_list(rke2_pkg, "serverFlag") + resolver.flag_list(rke2_pkg, "commonFlag")
    for flag in own:
        extra[flag.name] = {"origin": "rke2"}
    # Value lists RKE2 validates itself (fatal on anything else): pkg/cli/types.go.
    cli_pkg = resolver.package(f"{RKE2_MODULE}/pkg/cli")
    choices = {}
    notes = {
        "cni": "validateCNI (fatal otherwise): items split on ','; 'multus' only as the first of two items",
        "ingress-controller": (
            "validateIngress (fatal otherwise): items split on ','"
            if "validateIngress(clx)" in server_go
            else "not validated at start in this release: an unknown item silently leaves every "
            "packaged ingress controller disabled (pkg/bootstrap UpdateManifests)"
        ),
    }
    for flag_name, const in (("cni", "CNIItems"), ("ingress-controller", "IngressItems")):
        cfile, cexpr = cli_pkg.consts[const]
        choices[flag_name] = ["none", *(["multus"] if flag_name == "cni" else []), *resolver.string_list(cli_pkg, cfile, cexpr)]
        extra[flag_name]["values"] = choices[flag_name]
        extra[flag_name]["values_note"] = notes[flag_name]

    flags = flags_json(kept + own, extra)
    files = sorted({f"rke2:{f.file}" for f in own} | {"rke2:pkg/cli/cmds/server.go", "rke2:go.mod", "rke2:pkg/cli/types.go"}
                   | {f"k3s:{f.file}" for f in kept} | {"k3s:pkg/configfilearg/parser.go"})
    document = {
        "source": {
            "distribution": "rke2",
            "version": tag,
            "repo": "rancher/rke2",
            "tag": tag,
            "commit": rke2_commit,
            "commit_date": rke2.commit_date(),
            "k3s": {
                "repo": "k3s-io/k3s",
                "go_mod_version": k3s_version,
                "commit": k3s_commit,
                "commit_date": k3s.commit_date(),
                "read_from": describe_git_dir(k3s_git_dir),
            },
            "files": files,
            "file_sha256": file_digests({"rke2": rke2, "k3s": k3s}, files),
            "list": "k3s ServerFlags filtered by rke2 K3SFlagSet (server.go) + serverFlag + commonFlag",
            "dropped_k3s_flags": sorted(dropped),
            "extracted_by": "tools/extract_server_flags.py",
        },
        "flags": flags,
    }
    return document, f"rke2-{tag}.json"


# --------------------------------------------------------------------------- main


def describe_git_dir(git_dir: str) -> str:
    """`github:owner/name` for a fetch mirror (/work/.mirror/owner+name/repo), else the path."""
    match = re.search(r"/([A-Za-z0-9_.-]+)\+([A-Za-z0-9_.-]+)/repo/?$", git_dir)
    return f"github:{match.group(1)}/{match.group(2)} (a clone holding the upstream commit)" if match else f"git dir {git_dir}"


def write(out_dir: Path, filename: str, document: dict) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / filename
    path.write_text(json.dumps(document, indent=2, sort_keys=False) + "\n")
    print(f"wrote {path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path} "
          f"({len(document['flags'])} flags)")
    return path


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    sub = parser.add_subparsers(dest="command", required=True)

    p_all = sub.add_parser("all", help="write every pinned release (PINS)")
    p_all.add_argument("--rke2-git-dir", required=True)
    p_all.add_argument("--k3s-git-dir", required=True)

    p_rke2 = sub.add_parser("rke2")
    p_rke2.add_argument("--rke2-git-dir", required=True)
    p_rke2.add_argument("--tag", required=True)
    p_rke2.add_argument("--k3s-git-dir", required=True)

    p_k3s = sub.add_parser("k3s")
    p_k3s.add_argument("--version", required=True)
    p_k3s.add_argument("--commit", required=True, help="commit the source is at (recorded)")
    p_k3s.add_argument("--k3s-git-dir")
    p_k3s.add_argument("--k3s-source-dir", type=Path, help="directory holding pkg/cli/cmds/*.go, pkg/configfilearg/parser.go")
    p_k3s.add_argument("--tag-note", default="")

    args = parser.parse_args(argv)
    try:
        if args.command in ("all", "rke2"):
            tags = PINS["rke2"] if args.command == "all" else [args.tag]
            for tag in tags:
                document, filename = rke2_document(args.rke2_git_dir, tag, args.k3s_git_dir)
                write(args.out, filename, document)
        if args.command == "all":
            for pin in PINS["k3s"]:
                source = GitSource(args.k3s_git_dir, pin["commit"])
                commit = source.commit()
                document = k3s_document(source, pin["version"], commit,
                                        describe_git_dir(args.k3s_git_dir), pin["tag_note"])
                document["source"]["commit_date"] = source.commit_date()
                write(args.out, f"k3s-{pin['version']}.json", document)
        if args.command == "k3s":
            if bool(args.k3s_git_dir) == bool(args.k3s_source_dir):
                parser.error("give exactly one of --k3s-git-dir, --k3s-source-dir")
            if args.k3s_git_dir:
                source = GitSource(args.k3s_git_dir, args.commit)
                commit, note = source.commit(), describe_git_dir(args.k3s_git_dir)
            else:
                source, commit, note = DirSource(args.k3s_source_dir), args.commit, f"saved files in {args.k3s_source_dir}"
            write(args.out, f"k3s-{args.version}.json", k3s_document(source, args.version, commit, note, args.tag_note))
    except ExtractError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
