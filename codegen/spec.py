"""Spec files: load (safe YAML with locations), validate, expand into instances.

A spec file holds `groups:`; each group names an op, its targets and the op's fields, any
of which may be a list. A group expands to the cartesian product of its lists; the
constraints in `schema.CONSTRAINTS` prune invalid combinations (a group whose every
combination is invalid is an error). Instance sets (`instances/sets/NAME.yaml`) name spec
files and filter the expanded instances by canonical-name globs.

Every error is a `SpecError` carrying file, line, column, field, bad value and the allowed
values.
"""
from __future__ import annotations

import fnmatch
import itertools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import yaml

from . import schema
from .instance import Instance


class SpecError(Exception):
    def __init__(self, file: str | Path, line: int, col: int, message: str) -> None:
        self.file, self.line, self.col, self.message = str(file), line, col, message
        super().__init__(f"{file}:{line}:{col}: {message}")


@dataclass(frozen=True)
class Loc:
    file: str
    line: int  # 1-based
    col: int   # 1-based

    def error(self, message: str) -> SpecError:
        return SpecError(self.file, self.line, self.col, message)


class Node:
    """A YAML value with its location; mappings and sequences hold Nodes."""

    def __init__(self, value: Any, loc: Loc) -> None:
        self.value, self.loc = value, loc

    def plain(self) -> Any:
        if isinstance(self.value, dict):
            return {k: v.plain() for k, v in self.value.items()}
        if isinstance(self.value, list):
            return [v.plain() for v in self.value]
        return self.value


_SCALAR_TAGS = {f"tag:yaml.org,2002:{t}" for t in ("str", "int", "bool", "null", "float")}
MAP_TAG, SEQ_TAG = "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"
MAX_FILE_BYTES = 1 << 20
MAX_COMBINATIONS = 4096  # per group: a larger product is almost surely a mistake
MAX_INSTANCES = 16384    # per spec file and per set (sum over groups): bounds expansion time
MAX_DEPTH = 32           # nesting of mappings/lists: specs need 4; the composer recurses
MAX_VALUES = 100_000     # YAML values after alias expansion: stops "billion laughs" bombs
# Spec file names in a set: they end up in generated sources (comments) and messages.
SPEC_PATH = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*(/[A-Za-z0-9_][A-Za-z0-9_.-]*)*\.ya?ml$")


def load_yaml(path: Path) -> Node:
    """Parse with yaml.SafeLoader (no arbitrary objects) and keep every value's location."""
    text = _read_text(path)
    try:
        _check_shape(text, path)
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as e:
        line, col = _mark_of(e, text)
        raise SpecError(path, line, col, f"invalid YAML: {_problem(e)}") from None
    if root is None:
        raise SpecError(path, 1, 1, "empty spec file")
    return _to_node(root, str(path), yaml.SafeLoader(""))


def _mark_of(e: yaml.YAMLError, text: str) -> tuple[int, int]:
    """1-based line and column of a YAML error (a reader error only has an offset)."""
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    if mark is not None:
        return mark.line + 1, mark.column + 1
    pos = getattr(e, "position", None)
    if isinstance(pos, int):
        head = text[:pos]
        return head.count("\n") + 1, pos - (head.rfind("\n") + 1) + 1
    return 1, 1


def _problem(e: yaml.YAMLError) -> str:
    if isinstance(e, yaml.reader.ReaderError):  # its str() spans lines and quotes the text
        return f"character #x{e.character:04x} at offset {e.position} ({e.reason})" \
            if isinstance(e.character, int) else f"{e.reason} at offset {e.position}"
    return str(getattr(e, "problem", None) or e)


def _check_shape(text: str, path: Path) -> None:
    """One linear pass over the parse events before composing: bound the nesting depth
    (yaml.compose and _to_node recurse) and the number of values after alias expansion
    (a few lines of nested aliases can stand for 10^9 values), and reject an alias to a
    node that encloses it (a cycle). Nothing here grows with the expanded size."""
    count = 0
    expanded: dict[str, int] = {}         # anchor -> values it stands for
    open_: list[tuple[str | None, int]] = []  # enclosing collections: (anchor, count at start)
    for ev in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(ev, yaml.AliasEvent):
            if any(a == ev.anchor for a, _ in open_):
                raise SpecError(path, ev.start_mark.line + 1, ev.start_mark.column + 1,
                                f"alias *{ev.anchor} refers to a node that contains it (a cycle)")
            count += expanded.get(ev.anchor, 1)  # undefined: the composer reports it
        elif isinstance(ev, yaml.ScalarEvent):
            count += 1
            if ev.anchor:
                expanded[ev.anchor] = 1
        elif isinstance(ev, yaml.CollectionStartEvent):
            count += 1
            open_.append((ev.anchor, count))
            if len(open_) > MAX_DEPTH:
                raise SpecError(path, ev.start_mark.line + 1, ev.start_mark.column + 1,
                                f"nested deeper than {MAX_DEPTH} levels")
        elif isinstance(ev, yaml.CollectionEndEvent):
            anchor, start = open_.pop()
            if anchor:
                expanded[anchor] = count - start + 1
        if count > MAX_VALUES:
            raise SpecError(path, ev.start_mark.line + 1, ev.start_mark.column + 1,
                            f"document expands to more than {MAX_VALUES} values (YAML aliases "
                            "nested into a bomb?)")


def _read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise SpecError(path, 0, 0, f"cannot read spec file: {e.strerror}") from None
    if len(data) > MAX_FILE_BYTES:
        raise SpecError(path, 1, 1, f"spec file is {len(data)} bytes (limit {MAX_FILE_BYTES})")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SpecError(path, 1, 1, f"spec file is not UTF-8 ({e.reason})") from None


def _to_node(n: yaml.Node, file: str, ctor: yaml.SafeLoader) -> Node:
    loc = Loc(file, n.start_mark.line + 1, n.start_mark.column + 1)
    want = (MAP_TAG if isinstance(n, yaml.MappingNode) else
            SEQ_TAG if isinstance(n, yaml.SequenceNode) else None)
    if not (n.tag == want if want else n.tag in _SCALAR_TAGS):
        raise loc.error(f"unsupported YAML tag {_show(n.tag)} (specs hold plain mappings, "
                        "lists and scalars)")
    if isinstance(n, yaml.MappingNode):
        out: dict[str, Node] = {}
        for k, v in n.value:
            key = _to_node(k, file, ctor)
            if not isinstance(key.value, str):
                raise key.loc.error(f"mapping keys must be strings, got {_show(key.value)}")
            if key.value in out:
                raise key.loc.error(f"duplicate key {_show(key.value)} "
                                    f"(first at line {out[key.value].loc.line})")
            out[key.value] = _to_node(v, file, ctor)
        return Node(out, loc)
    if isinstance(n, yaml.SequenceNode):
        return Node([_to_node(v, file, ctor) for v in n.value], loc)
    try:
        value = ctor.construct_object(n, deep=True)
    # An explicit scalar tag on a bad value (`!!int abc`, `!!bool x`) and ints past
    # sys.int_max_str_digits raise plain Python errors from the constructor.
    except (yaml.YAMLError, ValueError, KeyError, TypeError, OverflowError) as e:
        raise loc.error(f"invalid {n.tag.rsplit(':', 1)[-1]} value {_show(n.value)} "
                        f"({type(e).__name__})") from None
    return Node(value, loc)


def _show(v: Any, limit: int = 60) -> str:
    """A value for a message: repr (quotes, escapes: one line whatever it holds), shortened;
    lists and mappings as their plain values."""
    if isinstance(v, Node):
        v = v.plain()
    elif isinstance(v, list):
        v = [x.plain() if isinstance(x, Node) else x for x in v]
    elif isinstance(v, dict):
        v = {k: x.plain() if isinstance(x, Node) else x for k, x in v.items()}
    text = repr(v)
    return text if len(text) <= limit else text[:limit] + "..."


def _fmt(values: Iterable[Any]) -> str:
    return ", ".join(str(v).lower() if isinstance(v, bool) else str(v) for v in values)


def _scalar(node: Node, field: str, allowed: tuple[Any, ...]) -> Any:
    v = node.value
    ok = any(type(v) is type(a) and v == a for a in allowed)
    if not ok:
        shown = "a list" if isinstance(v, list) else ("a mapping" if isinstance(v, dict) else _show(v))
        raise node.loc.error(f"field '{field}': bad value {shown} (allowed: {_fmt(allowed)})")
    return v


def _values(node: Node, field: str, allowed: tuple[Any, ...]) -> list[Any]:
    """A field value: a scalar or a non-empty list of distinct scalars, each allowed."""
    items = node.value if isinstance(node.value, list) else [node]
    if isinstance(node.value, list) and not items:
        raise node.loc.error(f"field '{field}': empty list (allowed: {_fmt(allowed)})")
    out: list[Any] = []
    for item in items:
        v = _scalar(item, field, allowed)
        if v in out and type(v) is type(out[out.index(v)]):
            raise item.loc.error(f"field '{field}': value {_show(v)} listed twice")
        out.append(v)
    return out


def _identifier(node: Node, field: str) -> str:
    v = node.value
    if not isinstance(v, str) or not schema.IDENT.match(v):
        raise node.loc.error(f"field '{field}': bad value {_show(v)} (allowed: an identifier "
                             f"matching {schema.IDENT.pattern})")
    return v


def expand_group(group: Node, targets_known: tuple[str, ...],
                 room: int = MAX_INSTANCES) -> list[Instance]:
    """The group's instances; `room`: how many more its file may still add."""
    if not isinstance(group.value, dict):
        raise group.loc.error("a group must be a mapping with 'id', 'op', 'targets' and the "
                              "op's fields")
    g: dict[str, Node] = group.value
    needs = {"id": "an identifier", "op": _fmt(schema.OPS), schema.TARGETS_FIELD: _fmt(targets_known)}
    for key in ("id", "op", schema.TARGETS_FIELD):
        if key not in g:
            raise group.loc.error(f"group is missing required field '{key}' (allowed: {needs[key]})")
    gid = _identifier(g["id"], "id")
    op_name = _scalar(g["op"], "op", tuple(schema.OPS))
    op = schema.OPS[op_name]
    for key, node in g.items():
        if key not in schema.GROUP_KEYS and op.field(key) is None:
            allowed = list(schema.GROUP_KEYS) + [f.name for f in op.fields]
            raise node.loc.error(f"field {_show(key)} does not apply to op '{op_name}' "
                                 f"(allowed fields: {', '.join(allowed)})")
    targets = _values(g[schema.TARGETS_FIELD], schema.TARGETS_FIELD, targets_known)
    axes: list[tuple[str, list[Any]]] = [("target", targets)]
    for f in op.fields:
        if f.name in g:
            axes.append((f.name, _values(g[f.name], f.name, f.allowed)))
        elif f.default is None:
            raise group.loc.error(f"group '{gid}' (op {op_name}) is missing required field "
                                  f"'{f.name}' (allowed: {_fmt(f.allowed)})")
        else:
            axes.append((f.name, [f.default]))
    total = 1
    for _, vals in axes:
        total *= len(vals)
    if total > MAX_COMBINATIONS:
        raise group.loc.error(f"group '{gid}' expands to {total} combinations "
                              f"(limit {MAX_COMBINATIONS}); split it")
    if total > room:
        raise group.loc.error(f"group '{gid}' expands to {total} combinations, past the "
                              f"limit of {MAX_INSTANCES} instances per spec file and per set "
                              f"(room left: {room})")
    out: list[Instance] = []
    reasons: list[str] = []
    for combo in itertools.product(*(vals for _, vals in axes)):
        params = dict(zip((name for name, _ in axes), combo))
        params["op"] = op_name
        reason = next((r for c in schema.CONSTRAINTS if (r := c.check(params))), None)
        if reason is not None:
            reasons.append(reason)
            continue
        out.append(Instance.create(params, group=gid, source=f"{group.loc.file}:{group.loc.line}"))
    if not out:
        raise group.loc.error(f"group '{gid}': every combination is invalid: {reasons[0]}")
    return out


def load_spec_file(path: Path, targets_known: tuple[str, ...]) -> list[Instance]:
    root = load_yaml(path)
    usage = "a spec file is a mapping with 'groups' (and optional 'description')"
    if not isinstance(root.value, dict):
        raise root.loc.error(usage)
    for key, v in root.value.items():
        if key not in ("groups", "description"):
            raise v.loc.error(f"{usage}; unknown: {_show(key)}")
    _description(root.value)
    groups = root.value.get("groups")
    if groups is None or not isinstance(groups.value, list) or not groups.value:
        raise (groups or root).loc.error("'groups' must be a non-empty list of instance groups")
    seen_ids: dict[str, Loc] = {}
    out: list[Instance] = []
    for g in groups.value:
        insts = expand_group(g, targets_known, MAX_INSTANCES - len(out))
        gid = insts[0].group
        if gid in seen_ids:
            raise g.loc.error(f"group id '{gid}' used twice (first at line {seen_ids[gid].line})")
        seen_ids[gid] = g.loc
        out.extend(insts)
    return out


def _description(doc: dict[str, Node]) -> str:
    d = doc.get("description")
    if d is not None and not isinstance(d.value, str):
        raise d.loc.error(f"field 'description': bad value {_show(d.value)} (allowed: a string)")
    return d.value if d is not None else ""


@dataclass(frozen=True)
class InstanceSet:
    name: str
    description: str
    instances: tuple[Instance, ...]
    spec_files: tuple[Path, ...]
    set_file: Path  # its only/exclude shape the build too: hashed with the specs


def load_set(root: Path, name: str, targets_known: tuple[str, ...],
             only: Iterable[str] = (), exclude: Iterable[str] = ()) -> InstanceSet:
    """Load instances/sets/NAME.yaml: `specs` (files under instances/), optional `only` /
    `exclude` globs over canonical names; `only`/`exclude` arguments add to them."""
    if not schema.IDENT.match(name):
        raise SpecError("<command line>", 0, 0, f"set name {_show(name)} is not an identifier")
    path = root / "sets" / f"{name}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in (root / "sets").glob("*.yaml"))
        raise SpecError(path, 0, 0, f"no instance set '{name}' (sets: {', '.join(known)})")
    node = load_yaml(path)
    if not isinstance(node.value, dict):
        raise node.loc.error("a set file is a mapping with 'specs', optional 'description', "
                             "'only' and 'exclude'")
    allowed_keys = ("description", "specs", "only", "exclude")
    for key, v in node.value.items():
        if key not in allowed_keys:
            raise v.loc.error(f"unknown set field {_show(key)} (allowed fields: {', '.join(allowed_keys)})")
    if "specs" not in node.value:
        raise node.loc.error("set is missing required field 'specs'")
    specs_node = node.value["specs"]
    if not isinstance(specs_node.value, list) or not specs_node.value:
        raise specs_node.loc.error("'specs' must be a non-empty list of spec files under instances/")

    def globs(key: str) -> list[str]:
        if key not in node.value:
            return []
        n = node.value[key]
        items = n.value if isinstance(n.value, list) else [n]
        for it in items:
            if not isinstance(it.value, str) or not it.value:
                raise it.loc.error(f"field '{key}': bad value {_show(it.value)} (allowed: glob strings)")
        return [it.value for it in items]

    spec_files: list[Path] = []
    instances: dict[str, Instance] = {}
    for sn in specs_node.value:
        rel = sn.value
        if not isinstance(rel, str) or not SPEC_PATH.match(rel) or len(rel) > 200 \
                or ".." in rel.split("/"):
            raise sn.loc.error(f"field 'specs': bad value {_show(rel)} (allowed: a relative path "
                               "of a spec file under instances/: letters, digits, _ . - and /, "
                               "ending in .yaml)")
        spath = root / rel
        if not spath.is_file():
            raise sn.loc.error(f"field 'specs': no spec file {_show(rel)} under {root}")
        spec_files.append(spath)
        for inst in load_spec_file(spath, targets_known):
            if inst.name in instances:
                other = instances[inst.name]
                raise SpecError(spath, int(inst.source.rsplit(":", 1)[1]), 1,
                                f"duplicate instance {inst.name} (also from group "
                                f"'{other.group}' at {other.source})")
            instances[inst.name] = inst
        if len(instances) > MAX_INSTANCES:
            raise sn.loc.error(f"set '{name}' expands to more than {MAX_INSTANCES} instances")
    keep_globs = globs("only") + list(only)
    drop_globs = globs("exclude") + list(exclude)
    chosen = [i for i in instances.values()
              if (not keep_globs or any(fnmatch.fnmatchcase(i.name, g) for g in keep_globs))
              and not any(fnmatch.fnmatchcase(i.name, g) for g in drop_globs)]
    if not chosen:
        raise node.loc.error(f"set '{name}' selects no instance (only={keep_globs}, "
                             f"exclude={drop_globs})")
    return InstanceSet(name, _description(node.value), tuple(sorted(chosen, key=lambda i: i.name)),
                       tuple(spec_files), path)
