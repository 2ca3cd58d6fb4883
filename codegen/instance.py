"""One expanded instance: an op, a target and a value for every field of the op."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import schema

_PREFIX = {"block_m": "m", "block_n": "n", "block_k": "k", "split_k": "sk", "cluster_k": "ck", "n_tiles": "nt",
           "out": "o", "routed_weight": "rw"}


@dataclass(frozen=True)
class Instance:
    name: str       # canonical: target, op and every field; a valid C++ identifier
    target: str
    op: str
    params: tuple[tuple[str, Any], ...]  # the op's fields in schema order
    group: str      # spec group it came from
    source: str     # "file:line" of that group

    @staticmethod
    def create(params: dict[str, Any], group: str, source: str) -> "Instance":
        op = schema.OPS[params["op"]]
        fields = tuple((f.name, params[f.name]) for f in op.fields)
        name = canonical_name(params["target"], op.name, dict(fields))
        if not schema.IDENT.match(name[:64]) or not name.replace("_", "").isalnum():
            raise ValueError(f"internal: generated name {name!r} is not an identifier")
        return Instance(name, params["target"], op.name, fields, group, source)

    def get(self, key: str, default: Any = None) -> Any:
        return dict(self.params).get(key, default)

    @property
    def args_type(self) -> str:
        return schema.OPS[self.op].args_type

    def row(self) -> dict[str, Any]:
        """The registry row: every schema field, '' / 0 where the op has none."""
        p = dict(self.params)
        return {
            "name": self.name, "target": self.target, "op": self.op, "args_type": self.args_type,
            "a": p.get("a", ""), "b": p.get("b", ""), "out": p.get("out", ""),
            "block_m": p.get("block_m", 0), "block_n": p.get("block_n", 0),
            "block_k": p.get("block_k", 0), "split_k": p.get("split_k", 1),
            "activation": p.get("activation", ""), "gate_up": p.get("gate_up", ""),
            "routed_weight": p.get("routed_weight", ""), "bias": int(bool(p.get("bias", False))),
            "layout": p.get("layout", ""), "b_path": p.get("b_path", ""),
            "cluster_k": p.get("cluster_k", 1), "n_tiles": p.get("n_tiles", 1),
        }


def canonical_name(target: str, op: str, fields: dict[str, Any]) -> str:
    parts = [target, op]
    if "a" in fields and "b" in fields:
        parts.append(f"{fields['a']}x{fields['b']}")
    elif "a" in fields:
        parts.append(fields["a"])
    for key in schema.NAME_ORDER:
        if key not in fields or key in ("a", "b"):
            continue
        v = fields[key]
        if key == "bias":
            parts.append("bias" if v else "nobias")
        elif key == "b_path":  # only the non-default path is named (names predate the field)
            if v != schema.default_of(op, "b_path"):
                parts.append(f"b{v}")
        elif (key == "split_k" and op == "moe_stage2") or key in ("cluster_k", "n_tiles"):
            if v != 1:  # named only when > 1 (names predate these fields)
                parts.append(f"{_PREFIX[key]}{v}")
        elif key in ("block_m", "block_n", "block_k", "split_k", "out", "routed_weight"):
            parts.append(f"{_PREFIX[key]}{v}")
        else:
            parts.append(str(v))
    return "_".join(parts)
