"""Keeps or drops records by a predicate on a JSON field — the Rust `filter` example in
Python, passing the same `plugins/filter/cases.json`.

Config: `field` (dotted path or JSON pointer), `op` (`eq`, `ne`, `gt`, `gte`, `lt`, `lte`,
`contains`, `prefix`, `in`, `exists`, `missing`; default `eq`), `value`, `mode` (`keep` the
matching records, the default, or `drop` them), `on_invalid` (`reject`, the default,
`drop` or `keep` values that are not JSON).
"""

import json

import sluice_sdk
from sluice_sdk import Error, Outcome

OPS = {"eq", "ne", "gt", "gte", "lt", "lte", "contains", "prefix", "in", "exists", "missing"}


class Filter:
    def __init__(self, get):
        self.field = get("field")
        if self.field is None:
            raise Error("config `field` is required")
        self.op = get("op") or "eq"
        if self.op not in OPS:
            raise Error(f"unknown op {self.op!r}")
        value = get("value")
        if value is None and self.op not in ("exists", "missing"):
            raise Error("config `value` is required for this op")
        self.value = value or ""
        self.list = [s.strip() for s in self.value.split(",")]
        mode = get("mode") or "keep"
        if mode not in ("keep", "drop"):
            raise Error(f"mode must be keep or drop, not {mode!r}")
        self.keep_matching = mode == "keep"
        self.on_invalid = get("on_invalid") or "reject"
        if self.on_invalid not in ("reject", "drop", "keep"):
            raise Error(f"on_invalid must be reject, drop or keep, not {self.on_invalid!r}")

    def compare(self, found):
        try:
            b = float(self.value)
        except ValueError:
            b = None
        if isinstance(found, (int, float)) and not isinstance(found, bool) and b is not None:
            a = float(found)
        else:
            a, b = text(found), self.value
        return (a > b) - (a < b)

    def matches(self, doc) -> bool:
        found = path(doc, self.field)
        if found is None:
            return self.op in ("missing", "ne")
        op = self.op
        if op == "exists":
            return True
        if op == "missing":
            return False
        if op == "contains":
            if isinstance(found, list):
                return any(text(v) == self.value for v in found)
            return self.value in text(found)
        if op == "prefix":
            return text(found).startswith(self.value)
        if op == "in":
            return text(found) in self.list
        c = self.compare(found)
        return {"eq": c == 0, "ne": c != 0, "gt": c > 0, "gte": c >= 0, "lt": c < 0, "lte": c <= 0}[op]


def path(doc, p: str):
    """The value at a dotted path or a JSON pointer; None if absent."""
    parts = [s.replace("~1", "/").replace("~0", "~") for s in p[1:].split("/")] if p.startswith("/") else p.split(".")
    cur = doc
    for part in parts:
        if isinstance(cur, dict):
            cur = cur.get(part)
        elif isinstance(cur, list) and part.isdigit() and int(part) < len(cur):
            cur = cur[int(part)]
        else:
            return None
    return cur


def text(v) -> str:
    """Strings as they are; anything else as its JSON text."""
    return v if isinstance(v, str) else json.dumps(v, separators=(",", ":"))


def setup():
    return Filter(sluice_sdk.config)


def filter_record(f: Filter, record):
    try:
        doc = record.json()
    except Error as e:
        return {"reject": Outcome.reject(str(e)), "drop": Outcome.drop(), "keep": Outcome.keep()}[f.on_invalid]
    return Outcome.keep() if f.matches(doc) == f.keep_matching else Outcome.drop()


WitWorld = sluice_sdk.transform(filter_record, init=setup)
