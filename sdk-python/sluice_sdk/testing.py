"""Run a transform natively, batch by batch through the same encoding a component uses,
and check it against a case table (`cases.json`, the format the Rust SDK's
`sluice_sdk::testing` reads — one table can test a transform in every language).

```python
from sluice_sdk.testing import Harness
Harness(shout).run_values(["hi"])[0].values() == ["HI"]
Harness(mask, init=setup).run_suites(open("cases.json").read())
```
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from . import codec, run_batch

DEFAULT_TIMESTAMP = 1_700_000_000_000


@dataclass
class Env:
    config: dict = field(default_factory=dict)
    outputs: list = field(default_factory=list)
    tables: dict = field(default_factory=dict)
    logs: list = field(default_factory=list)


ENV = Env()


@dataclass
class Ctx:
    topic: str = "input"
    partition: int = 0
    base_offset: int = 0
    base_timestamp: int = DEFAULT_TIMESTAMP
    record_count: int = 0


@dataclass
class TestRecord:
    value: bytes | None = None
    key: bytes | None = None
    headers: list = field(default_factory=list)
    timestamp: int = DEFAULT_TIMESTAMP


@dataclass
class Emitted:
    output: str
    key: bytes | None
    value: bytes | None
    headers: list

    def value_str(self):
        return None if self.value is None else self.value.decode("utf-8", "replace")


@dataclass
class TestOutcome:
    kind: str  # "drop", "reject" or "emit"
    reason: str | None = None
    emitted: list = field(default_factory=list)

    def values(self):
        return [e.value_str() for e in self.emitted]

    def describe(self):
        if self.kind == "reject":
            return f"rejected: {self.reason}"
        if self.kind == "drop":
            return "dropped"
        return f"emitted {[(e.output, e.value_str()) for e in self.emitted]}"


def _as_bytes(v):
    return v.encode("utf-8") if isinstance(v, str) else v


class Harness:
    """A transform (with its `init`, if any) run natively."""

    def __init__(self, fn, init=None):
        self.fn = fn
        self.init = init
        self.env = Env(outputs=["output"])

    def config(self, key: str, value: str) -> "Harness":
        self.env.config[key] = value
        return self

    def outputs(self, *names: str) -> "Harness":
        self.env.outputs = list(names)
        return self

    def run_values(self, values) -> list[TestOutcome]:
        return self.run([TestRecord(value=_as_bytes(v)) for v in values])

    def run(self, records: list[TestRecord]) -> list[TestOutcome]:
        global ENV
        ENV = self.env
        state = self.init() if self.init is not None else None
        ctx = Ctx(record_count=len(records))
        batch = bytearray()
        for r in records:
            codec.put_record(
                batch, r.timestamp - ctx.base_timestamp, _as_bytes(r.key), _as_bytes(r.value),
                [(k, _as_bytes(v)) for k, v in r.headers],
            )
        entries = run_batch(ctx, bytes(batch), self.fn, state, self.init is not None)
        inputs = codec.read_records(bytes(batch), len(records))
        return _decode_entries(entries, inputs, self.env.outputs)

    def run_suites(self, table_json: str) -> None:
        """Runs every suite of a case table; raises AssertionError at the first mismatch."""
        for suite in json.loads(table_json):
            if suite.get("stream"):
                raise AssertionError("stream suites (stateful plugins) are not supported yet")
            self.env = Env(
                config=dict(suite.get("config", {})),
                outputs=list(suite.get("outputs", [])) or ["output"],
                tables={
                    t: {k.encode(): _value_bytes(v) for k, v in kv.items()}
                    for t, kv in suite.get("tables", {}).items()
                },
            )
            cases = suite["cases"]
            records = [
                TestRecord(
                    value=_value_bytes(c["input"].get("value")),
                    key=_as_bytes(c["input"].get("key")),
                    headers=[(k, v.encode()) for k, v in c["input"].get("headers", {}).items()],
                    timestamp=c["input"].get("timestamp", DEFAULT_TIMESTAMP),
                )
                for c in cases
            ]
            for case, got in zip(cases, self.run(records)):
                _check(case, got, self.env.outputs[0])


def _value_bytes(v):
    if v is None:
        return None
    if isinstance(v, str):
        return v.encode("utf-8")
    return json.dumps(v, separators=(",", ":")).encode("utf-8")


def _decode_entries(buf: bytes, inputs, outputs) -> list[TestOutcome]:
    got = [TestOutcome("drop") for _ in inputs]
    pos = 0
    while pos < len(buf):
        kind = buf[pos]
        i, pos = codec.read_uvarint(buf, pos + 1)
        if kind == codec.REJECT:
            n, pos = codec.read_uvarint(buf, pos)
            got[i] = TestOutcome("reject", reason=buf[pos : pos + n].decode("utf-8"))
            pos += n
            continue
        o, pos = codec.read_uvarint(buf, pos)
        if kind == codec.PASS:
            r = inputs[i]
            e = Emitted(outputs[o], r.key, r.value, r.headers)
        else:
            length, body = codec.read_varint(buf, pos)
            (r,) = codec.read_records(buf[pos : body + length], 1)
            pos = body + length
            e = Emitted(outputs[o], r.key, r.value, r.headers)
        if got[i].kind != "emit":
            got[i] = TestOutcome("emit")
        got[i].emitted.append(e)
    return got


def _check(case, got: TestOutcome, default_output: str) -> None:
    name = case["name"]
    want = case["expect"]
    fail = f"case {name!r}: expected {want}, got {got.describe()}"
    if want == "drop":
        assert got.kind == "drop", fail
        return
    if "reject" in want:
        assert got.kind == "reject" and want["reject"] in got.reason, fail
        return
    emits = want["emit"]
    assert got.kind == "emit" and len(got.emitted) == len(emits), fail
    for w, h in zip(emits, got.emitted):
        v = w["value"]
        if isinstance(v, str):
            ok = h.value == v.encode("utf-8")
        elif v is None:
            ok = h.value is None
        else:
            try:
                ok = h.value is not None and json.loads(h.value) == v
            except ValueError:
                ok = False
        assert ok, fail
        assert h.output == w.get("output", default_output), fail
        if "key" in w:
            assert h.key == w["key"].encode("utf-8"), fail
        for k, hv in w.get("headers", {}).items():
            assert (k, hv.encode("utf-8")) in h.headers, fail
