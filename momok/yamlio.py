"""Reading user YAML strictly: every config, sources and run file of the package goes through here.

PyYAML's ``safe_load`` follows YAML 1.1, which is lenient in ways that hide mistakes. The
:class:`StrictLoader` here differs in three points:

* a mapping that repeats a key (two ``training:`` blocks) is an error naming the line of the
  repetition and of the first occurrence, instead of silently keeping the last one;
* only plain decimal integers are integers (``16``, ``-3``); ``0x10``, ``010``, ``0b1``, ``1_000``
  and sexagesimal ``1:30`` stay strings, so a typed field rejects them instead of reading 16, 8, ...;
* floats are decimal (``0.5``, ``1e-3``, ``1.5E+2``; the exponent form without a dot is a float, as in
  YAML 1.2) or ``.inf``/``.nan`` (read, so that the config checks can reject them by key).

:func:`load_yaml` reads a file with it and turns any YAML problem into a one-line
:class:`~momok.errors.InputError` ``path:line: problem``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from momok.errors import InputError

_INT = re.compile(r"^[-+]?(?:0|[1-9][0-9]*)$")
_FLOAT = re.compile(r"^(?:[-+]?(?:[0-9]+\.[0-9]*|\.[0-9]+|[0-9]+(?=[eE]))(?:[eE][-+]?[0-9]+)?"
                    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$")
_INT_TAG = "tag:yaml.org,2002:int"
_FLOAT_TAG = "tag:yaml.org,2002:float"


class DuplicateKeyError(yaml.constructor.ConstructorError):
    """A mapping repeats a key; ``problem_mark`` points at the repetition."""


class StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` with duplicate-key errors and decimal-only numbers (see the module docstring)."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            first_line: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    seen = first_line.get(key)
                except TypeError:  # an unhashable key: SafeConstructor reports it
                    continue
                if seen is not None:
                    raise DuplicateKeyError(None, None, f"duplicate key {key!r} (first at line {seen})",
                                            key_node.start_mark)
                first_line[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


# Resolvers are class-level tables keyed by first character: copy them, drop YAML 1.1's int and float
# patterns and add the strict ones (int first: "10" matches both).
StrictLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in (_INT_TAG, _FLOAT_TAG)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
StrictLoader.add_implicit_resolver(_INT_TAG, _INT, list("-+0123456789"))
StrictLoader.add_implicit_resolver(_FLOAT_TAG, _FLOAT, list("-+0123456789."))


def parse_yaml(text: str) -> Any:
    """``text`` parsed with :class:`StrictLoader` (raises ``yaml.YAMLError``)."""
    return yaml.load(text, Loader=StrictLoader)  # noqa: S506 - StrictLoader is a SafeLoader


def yaml_error_line(err: yaml.YAMLError) -> int | None:
    """The 1-based line a YAML error points at, if any."""
    mark = getattr(err, "problem_mark", None)
    return None if mark is None else mark.line + 1


def yaml_problem(err: yaml.YAMLError) -> str:
    """One line describing a YAML error (without PyYAML's multi-line context excerpt)."""
    if isinstance(err, DuplicateKeyError):
        return err.problem
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    return f"not valid YAML ({problem})"


def load_yaml(path: str | Path) -> Any:
    """Read and parse the YAML file ``path`` strictly; :class:`InputError` ``path:line: problem``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(path, "file not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(path, f"unreadable ({err})") from None
    try:
        return parse_yaml(text)
    except yaml.YAMLError as err:
        raise InputError(path, yaml_problem(err), line=yaml_error_line(err)) from None
