"""Run ROS 2 YAML launch files (the ``ros2 launch`` frontend format) where ROS 2 comes from pip.

``launch``, ``launch_ros`` and ``ros2cli`` are not pip-installable, so ``goggles launch`` reads
the same ``*.launch.yaml`` files itself and starts every node as its own process with
``--ros-args``, the way launch_ros builds the command line. The files stay valid for
``ros2 launch sim2real_goggles <file>``: this module accepts a subset of the real frontend and
rejects everything else with ``FILE:LINE``, rather than guessing.

Tags: ``launch``, ``arg`` (name, default, description, choice), ``let``, ``node``, ``include``,
``group`` (scoped), ``push-ros-namespace``/``push_ros_namespace``, ``set_env``,
``set_parameter`` and ``log``; ``if``/``unless`` on every one of them.
Substitutions: ``$(var)``, ``$(env NAME [DEFAULT])``, ``$(optenv NAME [DEFAULT])``,
``$(find-pkg-share PKG)``, ``$(find-pkg-prefix PKG)``, ``$(dirname)``, ``$(filename)`` and
``$(eval EXPR)`` for expressions over literals with ``==``, ``!=``, ``in``, ``and``, ``or``,
``not`` (evaluated with ``ast``, never ``eval()``). Semantics follow launch/launch_ros:
launch arguments are launch configurations visible to included files; ``include`` is not
scoped (wrap it in a ``group`` to scope it); parameter strings containing substitutions are
typed by YAML rules after substitution, literal strings stay strings.

Shutdown: SIGINT/SIGTERM to the runner, or the exit of a node with ``on_exit: shutdown``,
sends SIGINT to every node's process group, then SIGTERM after ``sigterm_timeout`` seconds,
then SIGKILL after ``sigkill_timeout`` more, like ``ros2 launch``.
"""

from __future__ import annotations

import ast
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

import yaml

PACKAGE = "sim2real_goggles"
LAUNCH_SUFFIX = ".launch.yaml"
DEFAULT_SIGTERM_TIMEOUT = 5.0
DEFAULT_SIGKILL_TIMEOUT = 5.0
OUTPUT_MODES = ("screen", "log", "both")

__all__ = [
    "ArgumentInfo",
    "LaunchError",
    "LaunchPlan",
    "NodeSpec",
    "find_executable",
    "find_launch_file",
    "format_arguments",
    "format_plan",
    "load_launch",
    "parse_cli_arguments",
    "run_plan",
]


class LaunchError(ValueError):
    """A launch file or its arguments cannot be run; the message names the file and line."""


# --------------------------------------------------------------------------------------------
# Results of resolving a launch file
# --------------------------------------------------------------------------------------------


@dataclass
class ArgumentInfo:
    """One declared launch argument (``arg``), as ``--show-args`` lists it."""

    name: str
    default: str | None
    description: str
    choices: list[str] | None
    source: str
    """FILE:LINE of the declaration."""
    value: str | None = None
    """The value in effect (command line, include argument or default)."""
    settable: bool = True
    """False when every declaration is in a file whose include sets it: a command-line value would be ignored."""


@dataclass
class NodeSpec:
    """One node process, fully resolved: what ``ros2 launch`` would start."""

    label: str
    """Name used in output prefixes: ``[label] line``."""
    package: str | None
    executable: str
    command: list[str]
    node_name: str | None
    namespace: str | None
    parameters: list[str]
    """The parameter arguments in order: ``name:=value`` rules and parameter file paths."""
    remappings: list[tuple[str, str]]
    env: dict[str, str]
    """The complete environment of the process."""
    output: str
    shutdown_on_exit: bool
    source: str

    def env_changes(self) -> dict[str, str]:
        """Variables that differ from the runner's own environment."""
        return {k: v for k, v in self.env.items() if os.environ.get(k) != v}


@dataclass
class LaunchPlan:
    """A launch file resolved against its arguments: the processes to start."""

    file: Path
    arguments: list[ArgumentInfo]
    nodes: list[NodeSpec]
    configurations: dict[str, str]
    messages: list[str] = field(default_factory=list)
    """Text of ``log`` actions, printed when the launch runs."""
    missing: list[str] = field(default_factory=list)
    """Required arguments without a value (only filled when resolving for ``--show-args``)."""


# --------------------------------------------------------------------------------------------
# YAML entities with line numbers
# --------------------------------------------------------------------------------------------


@dataclass
class _File:
    path: Path
    loader: yaml.SafeLoader

    def where(self, node: yaml.Node) -> str:
        return f"{self.path}:{node.start_mark.line + 1}"


class _Entity:
    """A launch entity (``- node: {...}``) whose attributes keep their YAML nodes for line numbers."""

    def __init__(self, kind: str, value: yaml.Node, file: _File, key_node: yaml.Node) -> None:
        self.kind = kind
        self.value = value
        self.file = file
        self.key_node = key_node
        self.attrs: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        if isinstance(value, yaml.MappingNode):
            file.loader.flatten_mapping(value)  # YAML merge keys (<<: *anchor), as yaml.safe_load applies them
            for k, v in value.value:
                name = file.loader.construct_object(k)
                if not isinstance(name, str):
                    raise LaunchError(f"{file.where(k)}: attribute names of '{kind}' must be strings, got {name!r}")
                if name in self.attrs:
                    raise LaunchError(f"{file.where(k)}: attribute '{name}' of '{kind}' given twice")
                self.attrs[name] = (k, v)
        elif not isinstance(value, yaml.SequenceNode) and not _is_null(value):
            raise LaunchError(f"{file.where(value)}: '{kind}' expects a mapping of attributes (or a list of entities)")

    @property
    def where(self) -> str:
        return self.file.where(self.key_node)

    def check_attributes(self, allowed: Iterable[str], *, conditions: bool = True) -> None:
        """Reject attributes outside ``allowed``; actions also take ``if``/``unless``, sub-entities
        such as ``param`` or ``remap`` do not."""
        allowed = set(allowed) | ({"if", "unless"} if conditions else set())
        for name, (key, _) in self.attrs.items():
            if name not in allowed:
                raise LaunchError(
                    f"{self.file.where(key)}: unsupported attribute '{name}' of '{self.kind}' "
                    f"(goggles launch supports: {', '.join(sorted(allowed))})"
                )

    def has(self, name: str) -> bool:
        return name in self.attrs

    def node_of(self, name: str) -> yaml.Node:
        return self.attrs[name][1]

    def raw(self, name: str) -> Any:
        return self.file.loader.construct_object(self.attrs[name][1], deep=True)

    def text(self, name: str, *, required: bool = True) -> str | None:
        """A string attribute: launch_yaml does not coerce, so ``default: 0`` fails under ros2 launch too."""
        if name not in self.attrs:
            if required:
                raise LaunchError(f"{self.where}: '{self.kind}' needs the attribute '{name}'")
            return None
        value = self.raw(name)
        if not isinstance(value, str):
            raise LaunchError(
                f"{self.file.where(self.node_of(name))}: attribute '{name}' of '{self.kind}' must be a "
                f'string, got {type(value).__name__} {value!r} (quote it: "{_plain(value)}"; '
                "ros2 launch rejects it too)"
            )
        return value

    def entities(self, name: str) -> list[_Entity]:
        """A list-of-entities attribute such as ``param``, ``remap`` or ``arg`` of an include."""
        if name not in self.attrs:
            return []
        node = self.node_of(name)
        if not isinstance(node, yaml.SequenceNode) or not all(isinstance(n, yaml.MappingNode) for n in node.value):
            raise LaunchError(
                f"{self.file.where(node)}: attribute '{name}' of '{self.kind}' must be a list of mappings"
            )
        return [_Entity(name, item, self.file, item) for item in node.value]

    def children(self) -> list[_Entity]:
        if isinstance(self.value, yaml.SequenceNode):
            items = self.value
        elif "children" in self.attrs:
            items = self.node_of("children")
        else:
            return []
        if not isinstance(items, yaml.SequenceNode):
            raise LaunchError(f"{self.file.where(items)}: the children of '{self.kind}' must be a list")
        return [_child_entity(item, self.file) for item in items.value]


def _is_null(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null"


def _plain(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _child_entity(item: yaml.Node, file: _File) -> _Entity:
    if not isinstance(item, yaml.MappingNode) or len(item.value) != 1:
        raise LaunchError(
            f"{file.where(item)}: each entity must be a mapping with one key, the entity type (e.g. '- node: {{...}}')"
        )
    key, value = item.value[0]
    kind = file.loader.construct_object(key)
    if not isinstance(kind, str):
        raise LaunchError(f"{file.where(key)}: entity type must be a string, got {kind!r}")
    return _Entity(kind, value, file, key)


def _load_file(path: Path) -> tuple[_File, list[_Entity]]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise LaunchError(f"{path}: cannot read the launch file ({exc.strerror})") from exc
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
    except yaml.YAMLError as exc:
        raise LaunchError(f"{path}: not valid YAML: {exc}") from exc
    file = _File(path, loader)
    if root is None or not isinstance(root, yaml.MappingNode) or len(root.value) != 1:
        raise LaunchError(f"{path}:1: a YAML launch file has exactly one root key, 'launch'")
    key, value = root.value[0]
    if loader.construct_object(key) != "launch":
        raise LaunchError(f"{file.where(key)}: the root key must be 'launch'")
    launch = _Entity("launch", value, file, key)
    if isinstance(value, yaml.MappingNode):
        launch.check_attributes(["children"], conditions=False)
    return file, launch.children()


# --------------------------------------------------------------------------------------------
# Substitutions: $(name arg ...) as the launch frontend grammar defines them
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Subst:
    name: str
    args: tuple[tuple[str | _Subst, ...], ...]


_Part = str | _Subst
_IDENTIFIER = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")
SUBSTITUTIONS = ("var", "env", "optenv", "find-pkg-share", "find-pkg-prefix", "dirname", "filename", "eval")


class _SubstitutionParser:
    """Recursive descent over the frontend grammar (launch/frontend/grammar.lark).

    Top level: text with ``$(...)``; ``\\`` escapes the next character. Inside ``$(name a b)``
    the arguments are separated by one space; an argument is unquoted (no spaces, quotes or
    parentheses) or a single/double-quoted template that may itself hold substitutions.
    """

    def __init__(self, text: str, where: str) -> None:
        self.text = text
        self.where = where
        self.i = 0

    def fail(self, message: str) -> LaunchError:
        return LaunchError(f"{self.where}: {message} in {self.text!r} (at character {self.i + 1})")

    def template(self) -> tuple[_Part, ...]:
        parts = self._until(stop="")
        if self.i != len(self.text):
            raise self.fail("unexpected character")
        return parts

    def _until(self, stop: str, *, unquoted_arg: bool = False) -> tuple[_Part, ...]:
        parts: list[_Part] = []
        buf: list[str] = []
        text = self.text
        while self.i < len(text):
            c = text[self.i]
            if c == "\\" and self.i + 1 < len(text):
                buf.append(text[self.i + 1])
                self.i += 2
                continue
            if text.startswith("$(", self.i):
                if buf:
                    parts.append("".join(buf))
                    buf = []
                parts.append(self._substitution())
                continue
            if c in stop:
                break
            if unquoted_arg and c in "'\"(":
                raise self.fail(f"unexpected {c!r} in a substitution argument (quote or escape it)")
            buf.append(c)
            self.i += 1
        if buf:
            parts.append("".join(buf))
        return tuple(parts)

    def _substitution(self) -> _Subst:
        self.i += 2
        m = _IDENTIFIER.match(self.text, self.i)
        if not m:
            raise self.fail("expected a substitution name after '$('")
        name = m.group(0)
        self.i = m.end()
        args: list[tuple[_Part, ...]] = []
        while True:
            if self.i >= len(self.text):
                raise self.fail(f"unterminated $({name} ...)")
            c = self.text[self.i]
            if c == ")":
                self.i += 1
                return _Subst(name, tuple(args))
            if c != " ":
                raise self.fail(f"expected ' ' or ')' in $({name} ...)")
            self.i += 1
            if self.i < len(self.text) and self.text[self.i] in " )":
                # The grammar allows exactly one space between arguments; ros2 launch rejects more.
                raise self.fail(f"extra space in $({name} ...)")
            args.append(self._argument())

    def _argument(self) -> tuple[_Part, ...]:
        quote = self.text[self.i]
        if quote in "'\"":
            self.i += 1
            parts = self._until(stop=quote)
            if self.i >= len(self.text):
                raise self.fail(f"unterminated {quote}-quoted argument")
            self.i += 1
            return parts
        parts = self._until(stop=" )", unquoted_arg=True)
        if not parts:
            raise self.fail("empty substitution argument")
        return parts


def _parse_template(text: str, where: str) -> tuple[_Part, ...]:
    if not text:
        return ("",)
    return _SubstitutionParser(text, where).template()


def _has_substitution(parts: tuple[_Part, ...]) -> bool:
    return any(isinstance(p, _Subst) for p in parts)


# --------------------------------------------------------------------------------------------
# $(eval): literals, comparisons and boolean operators only
# --------------------------------------------------------------------------------------------

_EVAL_COMPARISONS: dict[type, Callable[[Any, Any], bool]] = {
    ast.Eq: lambda a, b: a == b,
    ast.NotEq: lambda a, b: a != b,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
}


def _safe_eval(expression: str, where: str) -> Any:
    """Evaluate a ``$(eval ...)`` expression without ``eval()``.

    launch's PythonExpression runs arbitrary Python; the portable, common use in launch files is
    comparing substituted strings (``'"$(var robot)" == "sim"'``), so that is what this accepts.
    """
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as exc:
        raise LaunchError(f"{where}: $(eval) expression {expression!r} is not valid Python: {exc.msg}") from exc

    def ev(node: ast.AST) -> Any:
        if isinstance(node, ast.Constant) and isinstance(node.value, (str, int, float, bool, type(None))):
            return node.value
        if isinstance(node, (ast.Tuple, ast.List)):
            return tuple(ev(e) for e in node.elts)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            return not ev(node.operand)
        if isinstance(node, ast.BoolOp):
            # Python's semantics: `and` gives the first falsy operand, `or` the first truthy one.
            want = not isinstance(node.op, ast.And)
            value = None
            for operand in node.values:
                value = ev(operand)
                if bool(value) == want:
                    return value
            return value
        if isinstance(node, ast.Compare):
            left = ev(node.left)
            for op, comparator in zip(node.ops, node.comparators):
                right = ev(comparator)
                compare = _EVAL_COMPARISONS.get(type(op))
                if compare is None:
                    break
                if not compare(left, right):
                    return False
                left = right
            else:
                return True
        raise LaunchError(
            f"{where}: $(eval) supports only literals with ==, !=, in, not in, and, or, not; "
            f"got {ast.unparse(node)!r} in {expression!r}"
        )

    return ev(tree.body)


# --------------------------------------------------------------------------------------------
# Packages, executables and launch files
# --------------------------------------------------------------------------------------------


def _prefixes() -> list[Path]:
    """Install prefixes to search: this interpreter's, then the ament prefixes of a sourced ROS 2."""
    out = [Path(sys.prefix)]
    for entry in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        if entry and Path(entry) not in out:
            out.append(Path(entry))
    return out


def find_package_share(package: str) -> Path:
    """``$(find-pkg-share PKG)``: our own data root (checkout or install), else the install prefixes."""
    if package == PACKAGE:
        from sim2real_goggles.resources import share_dir

        return share_dir()
    for prefix in _prefixes():
        candidate = prefix / "share" / package
        if (prefix / "share" / "ament_index" / "resource_index" / "packages" / package).is_file() or (
            candidate / "package.xml"
        ).is_file():
            return candidate
    raise LaunchError(
        f"package '{package}' not found (looked in {', '.join(str(p / 'share') for p in _prefixes())}; "
        "source its ROS 2 workspace so AMENT_PREFIX_PATH names it)"
    )


def find_package_prefix(package: str) -> Path:
    """``$(find-pkg-prefix PKG)``."""
    share = find_package_share(package)
    if package == PACKAGE and (share / "package.xml").is_file() and share.name != package:
        return Path(sys.prefix)  # a source checkout: the installed bits live in this interpreter's prefix
    return share.parent.parent


def find_executable(package: str | None, executable: str, path_env: str | None = None) -> Path | None:
    """Where ``node pkg=... exec=...`` is: the console script beside this Python (a pip install),
    ``<prefix>/lib/<pkg>/<exec>`` (ament_python's script_dir, what ``ros2 run`` finds), else PATH."""
    if "/" in executable:
        candidate = Path(executable).expanduser()
        return candidate.resolve() if _is_executable(candidate) else None
    candidates = []
    if package is not None:
        candidates.append(Path(sys.executable).parent / executable)
        candidates.extend(prefix / "lib" / package / executable for prefix in _prefixes())
    for candidate in candidates:
        if _is_executable(candidate):
            return candidate
    found = shutil.which(executable, path=path_env)
    return Path(found) if found else None


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def find_launch_file(spec: str, package: str = PACKAGE) -> Path:
    """``navigation``, ``navigation.launch.yaml`` (in the package's share/launch) or a path."""
    path = Path(spec).expanduser()
    if path.is_file():
        return path.resolve()
    if "/" in spec or os.sep in spec:
        raise LaunchError(f"{spec}: no such launch file")
    launch_dir = find_package_share(package) / "launch"
    name = spec if spec.endswith(LAUNCH_SUFFIX) else f"{spec}{LAUNCH_SUFFIX}"
    candidate = launch_dir / name
    if candidate.is_file():
        return candidate
    available = sorted(p.name[: -len(LAUNCH_SUFFIX)] for p in launch_dir.glob(f"*{LAUNCH_SUFFIX}"))
    raise LaunchError(
        f"no launch file '{name}' in {launch_dir} (available: {', '.join(available) or 'none'}; or give a path)"
    )


def parse_cli_arguments(items: Iterable[str]) -> dict[str, str]:
    """``name:=value`` items, as ``ros2 launch`` takes them."""
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition(":=")
        if not sep or not name:
            raise LaunchError(f"launch arguments are NAME:=VALUE, got {item!r}")
        out[name] = value
    return out


# --------------------------------------------------------------------------------------------
# Resolution
# --------------------------------------------------------------------------------------------


@dataclass
class _Scope:
    """Launch context state that a scoped group saves and restores."""

    configurations: dict[str, str]
    env: dict[str, str]
    ros_namespace: str | None = None
    global_params: list[tuple[str, Any]] = field(default_factory=list)

    def copy(self) -> _Scope:
        return _Scope(dict(self.configurations), dict(self.env), self.ros_namespace, list(self.global_params))


_NAME_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PARAM_TYPES = ("str", "int", "float", "bool", "list_of_str", "list_of_int", "list_of_float", "list_of_bool", "yaml")
_NODE_ATTRIBUTES = (
    "pkg",
    "exec",
    "name",
    "namespace",
    "exec_name",
    "param",
    "remap",
    "env",
    "output",
    "args",
    "ros_args",
    "respawn",
    "on_exit",
)


def _prefix_namespace(base: str | None, ns: str | None) -> str | None:
    if base is None:
        return ns
    if ns is None:
        return base
    if ns.startswith("/"):
        return ns
    return f"{base.rstrip('/')}/{ns}"


def _absolute_namespace(ns: str | None) -> str | None:
    if ns is None:
        return None
    return ns if ns.startswith("/") else f"/{ns}"


def _check_namespace(ns: str, where: str) -> None:
    tokens = ns.strip("/").split("/") if ns != "/" else []
    if "//" in ns or not all(_NAME_TOKEN.fullmatch(t) for t in tokens):
        raise LaunchError(f"{where}: invalid ROS namespace {ns!r} (tokens of letters, digits and '_' separated by '/')")


def _yaml_value(text: str, where: str) -> Any:
    """Type a substituted string by YAML rules, as launch's coerce_to_type does (empty stays '')."""
    if not text:
        return text
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise LaunchError(f"{where}: parameter value {text!r} is not valid YAML ({exc.problem})") from exc
    if isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, list) and all(isinstance(v, (str, int, float, bool)) for v in value):
        return value
    raise LaunchError(
        f"{where}: parameter value {text!r} reads as YAML {type(value).__name__}, not a scalar or a "
        "list of scalars (ros2 launch rejects it too); give it 'type: str' to keep it as text"
    )


def _render_value(value: Any) -> str:
    """A parameter value as YAML for ``-p name:=value``: strings that read as numbers stay quoted."""
    text = yaml.safe_dump(value, default_flow_style=True, width=1 << 30)
    if text.endswith("\n...\n"):
        text = text[: -len("\n...\n")]
    return text.strip()


class _Resolver:
    """Walks launch entities like launch's LaunchService would, collecting processes instead of starting them."""

    def __init__(self, *, allow_missing: bool) -> None:
        self.allow_missing = allow_missing
        self.arguments: dict[str, ArgumentInfo] = {}
        self.nodes: list[NodeSpec] = []
        self.messages: list[str] = []
        self.missing: list[str] = []
        self.include_stack: list[Path] = []
        self.include_arguments: list[set[str]] = []

    # ---- substitutions --------------------------------------------------------------------

    def evaluate(self, parts: tuple[_Part, ...], scope: _Scope, file: _File, where: str) -> str:
        return "".join(p if isinstance(p, str) else self._substitute(p, scope, file, where) for p in parts)

    def substitute(self, text: str, scope: _Scope, file: _File, where: str) -> str:
        return self.evaluate(_parse_template(text, where), scope, file, where)

    def _substitute(self, sub: _Subst, scope: _Scope, file: _File, where: str) -> str:
        args = [self.evaluate(a, scope, file, where) for a in sub.args]

        def arity(low: int, high: int) -> None:
            if not low <= len(args) <= high:
                count = str(low) if low == high else f"{low} to {high}"
                raise LaunchError(f"{where}: $({sub.name}) takes {count} argument(s), got {len(args)}")

        if sub.name == "var":
            arity(1, 1)
            if args[0] not in scope.configurations:
                raise LaunchError(
                    f"{where}: launch configuration '{args[0]}' is not set (declare it with 'arg' or 'let' first)"
                )
            return scope.configurations[args[0]]
        if sub.name in ("env", "optenv"):
            arity(1, 2)
            if args[0] in scope.env:
                return scope.env[args[0]]
            if len(args) == 2:
                return args[1]
            if sub.name == "optenv":
                return ""
            raise LaunchError(
                f"{where}: environment variable '{args[0]}' is not set (use $(env {args[0]} DEFAULT) or $(optenv ...))"
            )
        if sub.name == "find-pkg-share":
            arity(1, 1)
            try:
                return str(find_package_share(args[0]))
            except LaunchError as exc:
                raise LaunchError(f"{where}: {exc}") from None
        if sub.name == "find-pkg-prefix":
            arity(1, 1)
            try:
                return str(find_package_prefix(args[0]))
            except LaunchError as exc:
                raise LaunchError(f"{where}: {exc}") from None
        if sub.name == "dirname":
            arity(0, 0)
            return str(file.path.parent)
        if sub.name == "filename":
            arity(0, 0)
            return str(file.path)
        if sub.name == "eval":
            if len(args) == 2:
                raise LaunchError(
                    f"{where}: $(eval EXPR MODULES) (importing modules) is not supported by goggles launch"
                )
            arity(1, 1)
            return str(_safe_eval(args[0], where))
        raise LaunchError(
            f"{where}: unsupported substitution $({sub.name}) (goggles launch supports: "
            f"{', '.join(f'$({s})' for s in SUBSTITUTIONS)})"
        )

    def condition(self, entity: _Entity, scope: _Scope) -> bool:
        if entity.has("if") and entity.has("unless"):
            raise LaunchError(f"{entity.where}: 'if' and 'unless' cannot be used together")
        for attr, wanted in (("if", True), ("unless", False)):
            if entity.has(attr):
                where = entity.file.where(entity.node_of(attr))
                text = self.substitute(entity.text(attr), scope, entity.file, where)
                value = text.strip().lower()
                if value in ("true", "1"):
                    return wanted
                if value in ("false", "0"):
                    return not wanted
                raise LaunchError(f"{where}: condition '{attr}' must be true/false/1/0, got {text!r}")
        return True

    # ---- files and entities ---------------------------------------------------------------

    def run_file(self, path: Path, scope: _Scope, where: str | None = None) -> None:
        path = path.resolve()
        if path in self.include_stack:
            raise LaunchError(f"{where or path}: {path.name} includes itself (include cycle)")
        if not path.name.endswith((".yaml", ".yml")):
            raise LaunchError(f"{where or path}: only YAML launch files can be run by goggles launch, not {path.name}")
        file, entities = _load_file(path)
        self.include_stack.append(path)
        try:
            self.run_entities(entities, scope, file)
        finally:
            self.include_stack.pop()

    def run_entities(self, entities: list[_Entity], scope: _Scope, file: _File) -> None:
        for entity in entities:
            handler = self._HANDLERS.get(entity.kind)
            if handler is None:
                raise LaunchError(
                    f"{entity.where}: unsupported launch tag '{entity.kind}' "
                    f"(goggles launch supports: {', '.join(sorted(self._HANDLERS))})"
                )
            handler(self, entity, scope)

    def _arg(self, e: _Entity, scope: _Scope) -> None:
        e.check_attributes(["name", "default", "description", "choice"])
        name = e.text("name")
        default = e.text("default", required=False)
        description = e.text("description", required=False) or ""
        choices = None
        if e.has("choice"):
            choices = []
            for c in e.entities("choice"):
                c.check_attributes(["value"], conditions=False)
                choices.append(c.text("value"))
        if not self.condition(e, scope):
            return
        # An include that passes this argument overrides whatever the command line said.
        settable = not any(name in names for names in self.include_arguments)
        info = self.arguments.setdefault(
            name, ArgumentInfo(name, default, description, choices, e.where, settable=settable)
        )
        info.settable = info.settable or settable
        if name not in scope.configurations:
            if default is None:
                if self.allow_missing:
                    self.missing.append(name)
                    return
                raise LaunchError(
                    f"{e.where}: required launch argument '{name}' of {e.file.path.name} was not given "
                    f"(pass {name}:=VALUE){': ' + description if description else ''}"
                )
            scope.configurations[name] = self.substitute(default, scope, e.file, e.file.where(e.node_of("default")))
        value = scope.configurations[name]
        if choices is not None and value not in choices:
            raise LaunchError(f"{e.where}: argument '{name}' is {value!r}, but it must be one of: {', '.join(choices)}")
        if info.value is None:
            info.value = value

    def _let(self, e: _Entity, scope: _Scope) -> None:
        e.check_attributes(["name", "value"])
        if not self.condition(e, scope):
            return
        name = self.substitute(e.text("name"), scope, e.file, e.where)
        scope.configurations[name] = self.substitute(e.text("value"), scope, e.file, e.where)

    def _set_env(self, e: _Entity, scope: _Scope) -> None:
        e.check_attributes(["name", "value"])
        if not self.condition(e, scope):
            return
        name = self.substitute(e.text("name"), scope, e.file, e.where)
        scope.env[name] = self.substitute(e.text("value"), scope, e.file, e.where)

    def _set_parameter(self, e: _Entity, scope: _Scope) -> None:
        e.check_attributes(["name", "value"])
        if not self.condition(e, scope):
            return
        name = self.substitute(e.text("name"), scope, e.file, e.where)
        if not e.has("value"):
            raise LaunchError(f"{e.where}: 'set_parameter' needs a 'value'")
        scope.global_params.append((name, self.parameter_value(e, scope, None)))

    def _log(self, e: _Entity, scope: _Scope) -> None:
        e.check_attributes(["message"])
        if self.condition(e, scope):
            self.messages.append(self.substitute(e.text("message"), scope, e.file, e.where))

    def _push_ros_namespace(self, e: _Entity, scope: _Scope) -> None:
        e.check_attributes(["namespace"])
        if not self.condition(e, scope):
            return
        pushed = self.substitute(e.text("namespace"), scope, e.file, e.where)
        namespace = _absolute_namespace(_prefix_namespace(scope.ros_namespace, pushed))
        _check_namespace(namespace, e.where)
        scope.ros_namespace = namespace

    def _group(self, e: _Entity, scope: _Scope) -> None:
        e.check_attributes(["scoped", "children"])
        if not self.condition(e, scope):
            return
        scoped = True
        if e.has("scoped"):
            raw = e.raw("scoped")
            text = _plain(raw).lower()
            if text not in ("true", "false"):
                raise LaunchError(f"{e.file.where(e.node_of('scoped'))}: 'scoped' must be true or false, got {raw!r}")
            scoped = text == "true"
        # A scoped group works on a copy: configurations, environment, namespace and global
        # parameters set inside it are gone afterwards (launch's Push/PopLaunchConfigurations).
        self.run_entities(e.children(), scope.copy() if scoped else scope, e.file)

    def _include(self, e: _Entity, scope: _Scope) -> None:
        e.check_attributes(["file", "arg"])
        if not self.condition(e, scope):
            return
        target = self.substitute(e.text("file"), scope, e.file, e.where)
        arguments = []
        for a in e.entities("arg"):
            a.check_attributes(["name", "value"], conditions=False)
            arguments.append(
                (
                    self.substitute(a.text("name"), scope, e.file, a.where),
                    self.substitute(a.text("value"), scope, e.file, a.where),
                )
            )
        path = Path(target).expanduser()
        if not path.is_absolute():
            path = Path.cwd() / path  # launch's AnyLaunchDescriptionSource takes it relative to the cwd
        if not path.is_file():
            raise LaunchError(
                f"{e.where}: included launch file {target!r} not found "
                "(build the path with $(find-pkg-share PKG) or $(dirname))"
            )
        # Not scoped, as in launch: the arguments stay set after the include (wrap it in a group).
        for name, value in arguments:
            scope.configurations[name] = value
        self.include_arguments.append({name for name, _ in arguments})
        try:
            self.run_file(path, scope, e.where)
        finally:
            self.include_arguments.pop()

    # ---- nodes ----------------------------------------------------------------------------

    def parameter_value(self, p: _Entity, scope: _Scope, type_name: str | None) -> Any:
        where = p.file.where(p.node_of("value"))
        raw = p.raw("value")
        if type_name in ("str",) and not isinstance(raw, str):
            raise LaunchError(f"{where}: value of type 'str' must be a quoted string, got {raw!r}")

        def one(item: Any, scalar_type: str | None) -> Any:
            if not isinstance(item, str):
                if scalar_type in ("int", "float") and not isinstance(item, bool):
                    return int(item) if scalar_type == "int" else float(item)
                return item
            parts = _parse_template(item, where)
            text = self.evaluate(parts, scope, p.file, where)
            if scalar_type == "str":
                return text
            try:
                if scalar_type == "int":
                    return int(text)
                if scalar_type == "float":
                    return float(text)
            except ValueError as exc:
                raise LaunchError(f"{where}: parameter value {text!r} is not a {scalar_type}") from exc
            if scalar_type == "bool":
                value = _yaml_value(text, where)
                if not isinstance(value, bool):
                    raise LaunchError(f"{where}: parameter value {text!r} is not a bool")
                return value
            # launch keeps literal strings as strings and types substituted ones by YAML rules.
            return _yaml_value(text, where) if _has_substitution(parts) or scalar_type == "yaml" else text

        if type_name is not None and type_name.startswith("list_of_"):
            scalar = type_name[len("list_of_") :]
            if isinstance(raw, list):
                return [one(x, scalar) for x in raw]
            value = one(raw, "yaml")
            if not isinstance(value, list):
                raise LaunchError(f"{where}: parameter value {value!r} is not a list")
            return [one(x, scalar) if isinstance(x, str) else x for x in value]
        if isinstance(raw, list):
            values = [one(x, type_name) for x in raw]
            if len({type(v) for v in values}) > 1:
                raise LaunchError(f"{where}: parameter lists must hold one type, got {values!r}")
            return values
        if raw is None or isinstance(raw, dict):
            raise LaunchError(f"{where}: parameter value must be a scalar or a list, got {raw!r}")
        return one(raw, type_name)

    def _parameters(self, entities: list[_Entity], scope: _Scope, prefix: str = "") -> list[tuple[str, Any]]:
        """``name``/``value`` params (nested ``param`` give dotted names) as (name, value); ``from`` as (None, path)."""
        out: list[tuple[str | None, Any]] = []
        for p in entities:
            p.check_attributes(["name", "value", "type", "param", "from"], conditions=False)
            if p.has("from"):
                if prefix or p.has("name") or p.has("value") or p.has("param"):
                    raise LaunchError(f"{p.where}: a 'param' with 'from' takes no name, value or nested param")
                path = Path(self.substitute(p.text("from"), scope, p.file, p.where)).expanduser()
                if not path.is_file():
                    raise LaunchError(f"{p.where}: parameter file {str(path)!r} not found")
                out.append((None, str(path.resolve())))
                continue
            name = self.substitute(p.text("name"), scope, p.file, p.where)
            full = f"{prefix}{name}"
            if p.has("param"):
                if p.has("value") or p.has("type"):
                    raise LaunchError(f"{p.where}: nested 'param' and 'value'/'type' are mutually exclusive")
                out.extend(self._parameters(p.entities("param"), scope, f"{full}."))
                continue
            if not p.has("value"):
                raise LaunchError(f"{p.where}: parameter '{full}' needs a 'value' (or nested 'param')")
            type_name = p.text("type", required=False)
            if type_name is not None and type_name not in _PARAM_TYPES:
                raise LaunchError(f"{p.where}: parameter type {type_name!r} is not one of {', '.join(_PARAM_TYPES)}")
            out.append((full, self.parameter_value(p, scope, type_name)))
        return out

    def _cmdline(self, e: _Entity, attr: str, scope: _Scope) -> list[str]:
        """Split ``args``/``ros_args`` like launch's ExecuteProcess._parse_cmdline: shell words in
        the text, while a substitution's value stays part of the word it touches."""
        text = e.text(attr)
        where = e.file.where(e.node_of(attr))
        result: list[str] = []
        current: list[str] = []
        pending = False  # current holds at least a substitution or a text token

        def flush() -> None:
            nonlocal current, pending
            if pending:
                result.append("".join(current))
            current, pending = [], False

        for part in _parse_template(text, where):
            if isinstance(part, _Subst):
                current.append(self._substitute(part, scope, e.file, where))
                pending = True
                continue
            try:
                tokens = shlex.split(part)
            except ValueError as exc:
                raise LaunchError(f"{where}: cannot split {attr} {text!r}: {exc}") from exc
            if not tokens:
                flush()
                continue
            if part[0].isspace():
                flush()
            current.append(tokens[0])
            pending = True
            if len(tokens) > 1:
                flush()
                result.extend(tokens[1:-1])
                current.append(tokens[-1])
                pending = True
            if part[-1].isspace():
                flush()
        flush()
        return result

    def _node(self, e: _Entity, scope: _Scope) -> None:
        e.check_attributes(_NODE_ATTRIBUTES)
        if not self.condition(e, scope):
            return
        f = e.file

        def sub(attr: str) -> str | None:
            text = e.text(attr, required=attr == "exec")
            return None if text is None else self.substitute(text, scope, f, f.where(e.node_of(attr)))

        package = sub("pkg")
        executable = sub("exec")
        node_name = sub("name")
        if node_name is not None and not _NAME_TOKEN.fullmatch(node_name):
            raise LaunchError(f"{e.where}: invalid node name {node_name!r} (letters, digits and '_')")
        namespace = _absolute_namespace(_prefix_namespace(scope.ros_namespace, sub("namespace")))
        if namespace is not None:
            _check_namespace(namespace, e.where)
        output = sub("output") or "screen"
        if output not in OUTPUT_MODES:
            raise LaunchError(f"{e.where}: output {output!r} is not supported (use one of: {', '.join(OUTPUT_MODES)})")
        respawn = sub("respawn")
        if respawn is not None and respawn.strip().lower() not in ("false", "0"):
            raise LaunchError(f"{e.where}: respawn is not supported by goggles launch (only respawn: 'false')")
        shutdown = False
        if e.has("on_exit"):
            on_exit = e.raw("on_exit")
            if on_exit != "shutdown":
                raise LaunchError(
                    f"{f.where(e.node_of('on_exit'))}: on_exit must be 'shutdown' (the only on_exit the "
                    f"YAML frontend knows), got {on_exit!r}"
                )
            shutdown = True

        env = dict(scope.env)
        env.setdefault("PYTHONUNBUFFERED", "1")  # launch does the same, so output lines arrive as printed
        for item in e.entities("env"):
            item.check_attributes(["name", "value"], conditions=False)
            env[self.substitute(item.text("name"), scope, f, item.where)] = self.substitute(
                item.text("value"), scope, f, item.where
            )

        exe_path = find_executable(package, executable, env.get("PATH"))
        if exe_path is None:
            looked = "PATH" if package is None else f"{Path(sys.executable).parent}, <prefix>/lib/{package} and PATH"
            raise LaunchError(
                f"{e.where}: executable '{executable}'"
                + (f" of package '{package}'" if package else "")
                + f" not found (looked in {looked})"
            )

        # The command launch_ros builds: EXE [args] [--ros-args ros_args] --ros-args -r __node:=
        # -r __ns:= [-p global params] [-p name:=value | --params-file FILE, in order] [-r from:=to].
        command = [str(exe_path)]
        if e.has("args"):
            command += self._cmdline(e, "args", scope)
        if e.has("ros_args"):
            command += ["--ros-args", *self._cmdline(e, "ros_args", scope)]
        command.append("--ros-args")
        if node_name is not None:
            command += ["-r", f"__node:={node_name}"]
        if namespace is not None:
            command += ["-r", f"__ns:={namespace}"]
        parameters: list[str] = []
        for name, value in scope.global_params:
            parameters.append(f"{name}:={_render_value(value)}")
            command += ["-p", parameters[-1]]
        for name, value in self._parameters(e.entities("param"), scope):
            if name is None:
                parameters.append(value)
                command += ["--params-file", value]
            else:
                parameters.append(f"{name}:={_render_value(value)}")
                command += ["-p", parameters[-1]]
        remappings = []
        for r in e.entities("remap"):
            r.check_attributes(["from", "to"], conditions=False)
            src = self.substitute(r.text("from"), scope, f, r.where)
            dst = self.substitute(r.text("to"), scope, f, r.where)
            remappings.append((src, dst))
            command += ["-r", f"{src}:={dst}"]

        label = sub("exec_name") or node_name or Path(executable).name
        taken = {n.label for n in self.nodes}
        if label in taken:
            k = 2
            while f"{label}-{k}" in taken:
                k += 1
            label = f"{label}-{k}"
        self.nodes.append(
            NodeSpec(
                label=label,
                package=package,
                executable=executable,
                command=command,
                node_name=node_name,
                namespace=namespace,
                parameters=parameters,
                remappings=remappings,
                env=env,
                output=output,
                shutdown_on_exit=shutdown,
                source=e.where,
            )
        )

    _HANDLERS: dict[str, Callable[[_Resolver, _Entity, _Scope], None]] = {
        "arg": _arg,
        "let": _let,
        "node": _node,
        "include": _include,
        "group": _group,
        "push-ros-namespace": _push_ros_namespace,
        "push_ros_namespace": _push_ros_namespace,
        "set_env": _set_env,
        "set_parameter": _set_parameter,
        "log": _log,
    }


def load_launch(
    file: str | Path,
    arguments: dict[str, str] | Iterable[str] = (),
    *,
    show_args: bool = False,
) -> LaunchPlan:
    """Resolve a launch file (name, file name or path) with ``name:=value`` arguments.

    The ``ros2 launch PACKAGE FILE`` form works too: ``load_launch("sim2real_goggles",
    ["navigation.launch.yaml", "goggles:=false"])``. ``show_args`` tolerates missing required
    arguments (listing them in ``plan.missing``) so ``--show-args`` works before the user knows
    what to pass.
    """
    if isinstance(arguments, dict):
        path, cli = find_launch_file(str(file)), dict(arguments)
    else:
        items = list(arguments)
        if items and ":=" not in items[0]:
            try:
                find_package_share(str(file))
            except LaunchError as exc:
                raise LaunchError(
                    f"launch arguments are NAME:=VALUE, got {items[0]!r} (nor is it PACKAGE FILE: {exc})"
                ) from None
            path = find_launch_file(items.pop(0), package=str(file))
        else:
            path = find_launch_file(str(file))
        cli = parse_cli_arguments(items)
    resolver = _Resolver(allow_missing=show_args)
    # Command-line arguments are launch configurations from the start, as in ros2 launch, so
    # included files see them too.
    scope = _Scope(configurations=dict(cli), env=dict(os.environ))
    try:
        resolver.run_file(path, scope)
    except LaunchError:
        # --show-args before the required arguments are known: list what was declared so far.
        if not resolver.missing:
            raise
    settable = sorted(name for name, info in resolver.arguments.items() if info.settable)
    unknown = [name for name in cli if name not in settable]
    if unknown:
        valid = ", ".join(settable) or "none"
        raise LaunchError(
            f"{path}: unknown launch argument{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} "
            f"(not an argument of {path.name}, nor of a file it includes that leaves it to the command line, "
            f"with these arguments; valid: {valid})"
        )
    return LaunchPlan(
        file=path,
        arguments=list(resolver.arguments.values()),
        nodes=resolver.nodes,
        configurations=scope.configurations,
        messages=resolver.messages,
        missing=resolver.missing,
    )


# --------------------------------------------------------------------------------------------
# Text for --print and --show-args
# --------------------------------------------------------------------------------------------


def format_arguments(plan: LaunchPlan) -> str:
    """The launch arguments with their descriptions, like ``ros2 launch --show-args``."""
    lines = [f"Arguments of {plan.file.name} (pass arguments as '<name>:=<value>'):", ""]
    shown = [a for a in plan.arguments if a.settable]
    if not shown:
        lines.append("  (none)")
    for a in shown:
        origin = a.source.rsplit(":", 1)[0]
        lines.append(f"    '{a.name}':" + ("" if origin == str(plan.file) else f" (from {Path(origin).name})"))
        description = a.description or "no description given"
        if a.choices:
            description = description.rstrip(".") + f". Valid choices are: {a.choices}"
        lines.append(f"        {description}")
        lines.append(f"        (default: {a.default!r})" if a.default is not None else "        (required)")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def format_plan(plan: LaunchPlan) -> str:
    """Resolved arguments and the processes with their exact commands, for ``--print``."""
    lines = [f"launch file: {plan.file}", "arguments:"]
    for a in plan.arguments:
        if a.settable:
            lines.append(f"  {a.name}:={a.value if a.value is not None else '<missing>'}")
    lines.append(f"processes ({len(plan.nodes)}):")
    for n in plan.nodes:
        flags = [f"output={n.output}"]
        if n.shutdown_on_exit:
            flags.append("on_exit=shutdown")
        lines.append(f"  [{n.label}] {' '.join(flags)}  ({n.source})")
        lines.append(f"    {shlex.join(n.command)}")
        changes = n.env_changes()
        if changes:
            lines.append("    env: " + " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(changes.items())))
    for message in plan.messages:
        lines.append(f"log: {message}")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------


def _pdeathsig() -> Callable[[], None] | None:
    """A preexec hook so nodes get SIGTERM if the runner itself is SIGKILLed (Linux only)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def hook() -> None:
        prctl(pr_set_pdeathsig, signal.SIGTERM)

    return hook


def _exit_code(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode


def _describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit code {returncode}"


def _log_dir() -> Path:
    if os.environ.get("ROS_LOG_DIR"):
        base = Path(os.environ["ROS_LOG_DIR"])
    elif os.environ.get("ROS_HOME"):
        base = Path(os.environ["ROS_HOME"]) / "log"
    else:
        base = Path.home() / ".ros" / "log"
    return base / f"goggles_launch_{datetime.now():%Y-%m-%d-%H-%M-%S}_{os.getpid()}"


class _Printer:
    """Line-prefixing output shared by the reader threads."""

    def __init__(self, stdout: TextIO, stderr: TextIO) -> None:
        self.stdout = stdout
        self.stderr = stderr
        self.lock = threading.Lock()

    def write(self, stream: TextIO, text: str) -> None:
        with self.lock:
            try:
                stream.write(text)
                stream.flush()
            except (OSError, ValueError):
                # The reader closed our output (`goggles launch ... | head`): keep draining the
                # node's pipe anyway, or the node would block on a full pipe.
                pass

    def info(self, message: str) -> None:
        self.write(self.stderr, f"[launch] {message}\n")


@dataclass
class _Running:
    spec: NodeSpec
    process: subprocess.Popen
    threads: list[threading.Thread]
    log: TextIO | None
    returncode: int | None = None


class _Launch:
    """Starts the processes of a plan, forwards their output and shuts them all down."""

    def __init__(
        self, plan: LaunchPlan, stdout: TextIO, stderr: TextIO, sigterm_timeout: float, sigkill_timeout: float
    ) -> None:
        self.plan = plan
        self.out = _Printer(stdout, stderr)
        self.sigterm_timeout = sigterm_timeout
        self.sigkill_timeout = sigkill_timeout
        self.running: list[_Running] = []
        self.signals: list[int] = []
        self.log_dir: Path | None = None

    def _reader(self, stream: Any, label: str, target: TextIO | None, log: TextIO | None) -> None:
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", errors="replace").rstrip("\n")
            text = f"[{label}] {line}\n"
            if target is not None:
                self.out.write(target, text)
            if log is not None:
                with self.out.lock:
                    log.write(line + "\n")
                    log.flush()
        stream.close()

    def start(self) -> None:
        hook = _pdeathsig()
        for spec in self.plan.nodes:
            log = None
            if spec.output in ("log", "both"):
                if self.log_dir is None:
                    self.log_dir = _log_dir()
                    self.log_dir.mkdir(parents=True, exist_ok=True)
                log = open(self.log_dir / f"{spec.label}.log", "a", encoding="utf-8")  # noqa: SIM115
            # Its own session and process group: signals reach the node and anything it spawned,
            # and a Ctrl-C in the terminal reaches only the runner, which then shuts down in order.
            try:
                process = subprocess.Popen(
                    spec.command,
                    env=spec.env,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    start_new_session=True,
                    preexec_fn=hook,  # no reader threads exist yet when the nodes fork
                )
            except OSError as exc:
                if log is not None:
                    log.close()
                raise LaunchError(f"{spec.source}: cannot start {spec.command[0]}: {exc.strerror}") from exc
            self.running.append(_Running(spec, process, [], log))
            self.out.info(f"[{spec.label}] started, pid {process.pid}")
        # Reader threads start after every fork, so preexec_fn never runs beside other threads.
        for r in self.running:
            stdout_target = self.out.stdout if r.spec.output in ("screen", "both") else None
            for stream, target in ((r.process.stdout, stdout_target), (r.process.stderr, self.out.stderr)):
                t = threading.Thread(target=self._reader, args=(stream, r.spec.label, target, r.log), daemon=True)
                t.start()
                r.threads.append(t)
        if self.log_dir is not None:
            self.out.info(f"node logs in {self.log_dir}")

    def _signal_groups(self, sig: int, only_alive: bool = True) -> None:
        for r in self.running:
            if only_alive and r.returncode is not None and not _group_alive(r.process.pid):
                continue
            try:
                os.killpg(r.process.pid, sig)
            except (ProcessLookupError, PermissionError):
                pass

    def _poll(self) -> list[_Running]:
        exited = []
        for r in self.running:
            if r.returncode is None:
                code = r.process.poll()
                if code is not None:
                    r.returncode = code
                    exited.append(r)
        return exited

    def run(self) -> int:
        result: int | None = None  # decided by a shutdown node or a signal
        failed: list[str] = []
        phase = 0  # 0 running, 1 SIGINT sent, 2 SIGTERM sent, 3 SIGKILL sent
        deadline = 0.0
        self.start()

        def begin_shutdown(reason: str) -> None:
            nonlocal phase, deadline
            if phase:
                return
            alive = [r.spec.label for r in self.running if r.returncode is None]
            if alive:
                self.out.info(f"{reason}; sending SIGINT to {', '.join(alive)}")
            phase, deadline = 1, time.monotonic() + self.sigterm_timeout
            self._signal_groups(signal.SIGINT)

        while True:
            for r in self._poll():
                code = r.returncode
                if code == 0:
                    self.out.info(f"[{r.spec.label}] finished cleanly, pid {r.process.pid}")
                else:
                    detail = "" if phase else f": {shlex.join(r.spec.command)}"
                    self.out.info(f"[{r.spec.label}] died, pid {r.process.pid}, {_describe_exit(code)}{detail}")
                    if not phase:
                        failed.append(r.spec.label)  # exits caused by our own shutdown signals don't count
                if r.spec.shutdown_on_exit and not phase:
                    if result is None:
                        result = _exit_code(code)
                    begin_shutdown(f"[{r.spec.label}] exited and has on_exit: shutdown")
            while self.signals:
                sig = self.signals.pop(0)
                name = signal.Signals(sig).name
                if not phase:
                    result = 128 + sig
                    begin_shutdown(f"{name} received")
                elif phase < 3:
                    # A second Ctrl-C skips the rest of the grace period, as ros2 launch does.
                    deadline = time.monotonic()
            if all(r.returncode is not None for r in self.running):
                if not phase and self.running:
                    begin_shutdown("all processes exited")  # signals any processes they left behind
                if not any(_group_alive(r.process.pid) for r in self.running):
                    break
            if phase and time.monotonic() >= deadline:
                if phase == 1:
                    left = [r.spec.label for r in self.running if r.returncode is None]
                    self.out.info(f"{', '.join(left) or 'children'} still running after SIGINT; sending SIGTERM")
                    phase, deadline = 2, time.monotonic() + self.sigkill_timeout
                    self._signal_groups(signal.SIGTERM)
                elif phase == 2:
                    left = [r.spec.label for r in self.running if r.returncode is None]
                    self.out.info(f"{', '.join(left) or 'children'} still running after SIGTERM; sending SIGKILL")
                    phase, deadline = 3, time.monotonic() + 5.0
                    self._signal_groups(signal.SIGKILL)
                else:
                    break
            time.sleep(0.02)
        self.cleanup()
        if result is None:
            result = 1 if failed else 0
        elif result == 0 and failed:
            result = 1
        if failed:
            self.out.info(f"failed: {', '.join(failed)}")
        return result

    def cleanup(self) -> None:
        """Nothing outlives the launch: SIGKILL whatever is left in the nodes' process groups."""
        self._signal_groups(signal.SIGKILL, only_alive=False)
        for r in self.running:
            if r.returncode is None:
                try:
                    r.returncode = r.process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
            for t in r.threads:
                t.join(timeout=2)
            if r.log is not None:
                r.log.close()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return _group_has_live_member(pgid)


def _group_has_live_member(pgid: int) -> bool:
    """killpg(0) also succeeds for zombies whose parent has not reaped them (PID 1 in a container
    often never does); /proc tells the two apart where it exists."""
    proc = Path("/proc")
    if not proc.is_dir():
        return True
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def run_plan(
    plan: LaunchPlan,
    *,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    sigterm_timeout: float = DEFAULT_SIGTERM_TIMEOUT,
    sigkill_timeout: float = DEFAULT_SIGKILL_TIMEOUT,
    handle_signals: bool = True,
) -> int:
    """Start every node of ``plan`` and wait until the launch ends; returns the exit status.

    The status is that of the ``on_exit: shutdown`` node that ended the launch, 128+N after
    signal N to the runner, else 0 — and non-zero whenever a node died with an error first.
    """
    stdout = stdout if stdout is not None else sys.stdout
    stderr = stderr if stderr is not None else sys.stderr
    launch = _Launch(plan, stdout, stderr, sigterm_timeout, sigkill_timeout)
    for message in plan.messages:
        launch.out.info(message)
    if not plan.nodes:
        launch.out.info(f"{plan.file.name}: no processes to start with these arguments")
        return 0
    previous: dict[int, Any] = {}
    if handle_signals and threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, lambda signum, frame: launch.signals.append(signum))
    try:
        return launch.run()
    except BaseException:
        launch.cleanup()
        raise
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
