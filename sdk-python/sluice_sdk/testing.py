"""Run a transform natively, batch by batch through the same encoding a component uses,
and check it against a case table (`cases.json`, the format the Rust SDK's
`sluice_sdk::testing` reads — one table can test a transform in every language).

```python
from sluice_sdk.testing import Harness
Harness(shout).run_values(["hi"])[0].values() == ["HI"]
Harness(mask, init=setup).run_suites(open("cases.json").read())
```

Stateful transforms run as a stream over one simulated partition, as the host runs them:
state, timers and the watermark (max event time − allowed lateness) carry over from batch
to batch, late records are not processed, and due timers fire after each batch:

```python
s = Harness(count, on_timer=close).allowed_lateness(500).stream()
s.push([TestRecord(value=b"x", key=b"a", timestamp=1_100)])
fired = s.advance(10_000)   # [Fired(at, key, outcome)]
```
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field

from . import (
    NO_WATERMARK,
    _reason,
    bind,
    codec,
    in_call,
    path,
    run_batch,
    run_timers,
    run_whole_batch,
)

DEFAULT_TIMESTAMP = 1_700_000_000_000
DEFAULT_TOPIC = "input"

MAX_TIMER_ROUNDS = 100
"""Most rounds of timer firing at one watermark, as on the host."""


@dataclass
class Env:
    config: dict = field(default_factory=dict)
    outputs: list = field(default_factory=list)
    tables: dict = field(default_factory=dict)
    logs: list = field(default_factory=list)
    state: dict = field(default_factory=dict)
    timers: set = field(default_factory=set)  # (at, key)


ENV = Env()


@dataclass
class Ctx:
    topic: str = DEFAULT_TOPIC
    partition: int = 0
    base_offset: int = 0
    base_timestamp: int = DEFAULT_TIMESTAMP
    record_count: int = 0
    watermark: int = NO_WATERMARK
    event_times: list = field(default_factory=list)


@dataclass
class TestRecord:
    value: bytes | None = None
    key: bytes | None = None
    headers: list = field(default_factory=list)
    timestamp: int = DEFAULT_TIMESTAMP
    topic: str | None = None  # the input topic it comes from; None: DEFAULT_TOPIC


def _topic_runs(records):
    """Runs of records of one topic: the batches the host hands over (one input each)."""
    return [list(run) for _, run in itertools.groupby(records, key=lambda r: r.topic)]


@dataclass
class Emitted:
    output: str
    key: bytes | None
    value: bytes | None
    headers: list
    timestamp: int | None = None

    def value_str(self):
        return None if self.value is None else self.value.decode("utf-8", "replace")


@dataclass
class TestOutcome:
    kind: str  # "drop", "reject", "emit" or "late" (before the watermark: not processed)
    reason: str | None = None
    emitted: list = field(default_factory=list)

    def values(self):
        return [e.value_str() for e in self.emitted]

    def describe(self):
        if self.kind == "reject":
            return f"rejected: {self.reason}"
        if self.kind in ("drop", "late"):
            return {"drop": "dropped", "late": "late"}[self.kind]
        return f"emitted {[(e.output, e.value_str()) for e in self.emitted]}"


def _as_bytes(v):
    return v.encode("utf-8") if isinstance(v, str) else v


@dataclass
class Fired:
    """A timer that fired in a stream, and what the handler made of it."""

    at: int
    key: bytes
    outcome: TestOutcome

    def values(self):
        return self.outcome.values()


@dataclass
class Pushed:
    """What one batch of a stream did: one outcome per record, then the timers fired."""

    outcomes: list
    fired: list


def _encode(records, ctx) -> bytes:
    batch = bytearray()
    for r in records:
        codec.put_record(
            batch, r.timestamp - ctx.base_timestamp, _as_bytes(r.key), _as_bytes(r.value),
            [(k, _as_bytes(v)) for k, v in r.headers],
        )
    return bytes(batch)


class Harness:
    """A transform (with its `init` and timer handler, if any) run natively."""

    def __init__(self, fn, init=None, on_timer=None, batch=False):
        """`batch=True` for a `transform_batch` function (`fn(batch)`)."""
        self.fn = fn
        self.batch = batch
        self.init = init
        self.on_timer = on_timer
        self.env = Env(outputs=["output"])
        self.lateness = 0
        self.time_field = None

    def config(self, key: str, value: str) -> "Harness":
        self.env.config[key] = value
        return self

    def outputs(self, *names: str) -> "Harness":
        self.env.outputs = list(names)
        return self

    def allowed_lateness(self, ms: int) -> "Harness":
        """The deployment's `event_time.allowed_lateness_ms` (for `stream`)."""
        self.lateness = ms
        return self

    def event_time_field(self, name: str) -> "Harness":
        """The deployment's `event_time.field` (for `stream`)."""
        self.time_field = name
        return self

    def _bound(self):
        instance = self.init() if self.init is not None else None
        return bind(self.fn, self.on_timer, instance, self.init is not None)

    def run_values(self, values) -> list[TestOutcome]:
        return self.run([TestRecord(value=_as_bytes(v)) for v in values])

    def run(self, records: list[TestRecord]) -> list[TestOutcome]:
        """One batch (one per run of records of one topic) through a fresh instance (state
        starts empty)."""
        global ENV
        self.env.state, self.env.timers = {}, set()
        ENV = self.env
        fn, _ = self._bound()
        got = []
        for run in _topic_runs(records):
            ctx = Ctx(run[0].topic or DEFAULT_TOPIC, base_offset=len(got), record_count=len(run))
            got += self._call_batch(run, ctx, fn, in_call)
        return got

    def _call_batch(self, records, ctx, fn, call) -> list[TestOutcome]:
        """One `process` call and its outcomes. A whole-batch function that raises fails
        the call: as on the host, each record then runs alone, and one that raises alone
        is dead-lettered with the reason."""
        batch = _encode(records, ctx)
        inputs = codec.read_records(batch, len(records))
        if not self.batch:
            entries = call(lambda: run_batch(ctx, batch, fn))
            return _decode_entries(entries, inputs, self.env.outputs, ctx)
        try:
            entries = call(lambda: run_whole_batch(ctx, batch, fn))
            return _decode_entries(entries, inputs, self.env.outputs, ctx)
        except Exception:  # noqa: BLE001 - isolated below
            if len(records) == 1:
                raise
        got = []
        for k, r in enumerate(records):
            one = Ctx(
                ctx.topic,
                base_offset=ctx.base_offset + k,
                base_timestamp=ctx.base_timestamp,
                record_count=1,
                watermark=ctx.watermark,
                event_times=ctx.event_times[k : k + 1],
            )
            try:
                got += self._call_batch([r], one, fn, call)
            except Exception as e:  # noqa: BLE001 - the record's verdict
                got.append(TestOutcome("reject", reason=_reason(e)))
        return got

    def stream(self) -> "Stream":
        """A stream of batches over one partition, as the host runs a stateful deployment."""
        global ENV
        ENV = self.env
        return Stream(self, self._bound())

    def run_suites(self, table_json: str) -> None:
        """Runs every suite of a case table; raises AssertionError at the first mismatch."""
        for suite in json.loads(table_json):
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
                    topic=c["input"].get("topic"),
                )
                for c in cases
            ]
            default = self.env.outputs[0]
            settings = suite.get("stream")
            if settings is None:
                for case, got in zip(cases, self.run(records)):
                    _check(case, got, default)
                continue
            self.lateness = settings.get("allowed_lateness_ms", 0)
            self.time_field = settings.get("event_time_field")
            s = self.stream()
            for case, record in zip(cases, records):
                pushed = s.push([record])
                fired = pushed.fired
                if case.get("advance_to") is not None:
                    fired += s.advance(case["advance_to"])
                _check(case, pushed.outcomes[0], default)
                emitted = [e for f in fired for e in f.outcome.emitted]
                got = [e.value_str() for e in emitted]
                want = case.get("fired", [])
                assert len(emitted) == len(want), (
                    f"case {case['name']!r}: expected {len(want)} records from timers, got {got}"
                )
                for w, e in zip(want, emitted):
                    why = _emit_mismatch(w, e, default)
                    assert why is None, f"case {case['name']!r}: from timers: {why}; got {got}"


class Stream:
    """A stateful run over one simulated partition (see `Harness.stream`)."""

    def __init__(self, harness: Harness, bound):
        self.h = harness
        self.fn, self.on_timer = bound
        self.env = harness.env
        self.watermark = NO_WATERMARK
        self.max_event_time = NO_WATERMARK
        self.offset = 0

    def state(self) -> dict:
        return self.env.state

    def timers(self) -> list:
        """Pending timers, (at, key), in firing order."""
        return sorted(self.env.timers)

    def _call(self, body):
        global ENV
        ENV = self.env
        saved = (dict(self.env.state), set(self.env.timers))
        try:
            return in_call(body)
        except BaseException:
            # A failed call leaves nothing behind, as on the host.
            self.env.state, self.env.timers = saved
            raise

    def _event_time(self, r: TestRecord) -> int:
        if self.h.time_field is None:
            return r.timestamp
        v = path(json.loads(r.value or b"null"), self.h.time_field)
        t = _timestamp_ms(v)
        if t is None:
            raise AssertionError(f"no event time in field {self.h.time_field!r} of {r.value!r}")
        return t

    def push(self, records: list[TestRecord]) -> Pushed:
        """One batch (one per run of records of one topic): records before the watermark
        are late (not processed), the rest go through the transform; then the watermark
        moves and due timers fire."""
        if not records:
            return self._push_batch(records)
        pushed = Pushed([], [])
        for run in _topic_runs(records):
            p = self._push_batch(run)
            pushed.outcomes += p.outcomes
            pushed.fired += p.fired
        return pushed

    def _push_batch(self, records: list[TestRecord]) -> Pushed:
        times = [self._event_time(r) for r in records]
        on_time = [i for i, t in enumerate(times) if t >= self.watermark]
        batch_records = [records[i] for i in on_time]
        ctx = Ctx(
            topic=(records[0].topic if records else None) or DEFAULT_TOPIC,
            base_offset=self.offset,
            record_count=len(batch_records),
            watermark=self.watermark,
            event_times=[times[i] for i in on_time] if self.h.time_field else [],
        )
        self.offset += len(records)
        processed = self.h._call_batch(batch_records, ctx, self.fn, self._call)
        outcomes = [TestOutcome("late") for _ in records]
        for i, o in zip(on_time, processed):
            outcomes[i] = o
        if on_time:
            self.max_event_time = max(self.max_event_time, max(times[i] for i in on_time))
        fired = []
        if self.max_event_time != NO_WATERMARK:
            fired = self.advance(self.max_event_time - self.h.lateness)
        return Pushed(outcomes, fired)

    def advance(self, to: int) -> list[Fired]:
        """Moves the watermark to `to` (if later), as the host does for an idle partition,
        and fires the timers due."""
        self.watermark = max(self.watermark, to)
        fired = []
        for _ in range(MAX_TIMER_ROUNDS):
            due = [t for t in sorted(self.env.timers) if t[0] <= self.watermark]
            if not due:
                break
            self.env.timers.difference_update(due)
            if self.on_timer is None:
                continue
            ctx = Ctx(
                topic="test",
                base_offset=self.offset,
                base_timestamp=self.watermark,
                record_count=len(due),
                watermark=self.watermark,
            )
            buf = bytearray()
            for at, key in due:
                codec.put_timer(buf, at, key)
            entries = self._call(lambda: run_timers(ctx, bytes(buf), self.on_timer))
            outcomes = _decode_entries(entries, None, self.env.outputs, ctx, len(due))
            fired += [Fired(at, key, o) for (at, key), o in zip(due, outcomes)]
        return fired


def _timestamp_ms(v):
    """Milliseconds since the epoch from a JSON number, digit string or RFC 3339 time."""
    from datetime import datetime

    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return int(v)
    if isinstance(v, str):
        try:
            return int(v)
        except ValueError:
            pass
        try:
            t = datetime.fromisoformat(v)
        except ValueError:
            return None
        if t.tzinfo is None:
            return None
        return int(t.timestamp() * 1000)
    return None


def _value_bytes(v):
    if v is None:
        return None
    if isinstance(v, str):
        return v.encode("utf-8")
    return json.dumps(v, separators=(",", ":")).encode("utf-8")


def _decode_entries(buf: bytes, inputs, outputs, ctx, count=None) -> list[TestOutcome]:
    """One outcome per input (`inputs` None: per fired timer, `count` of them)."""
    got = [TestOutcome("drop") for _ in range(len(inputs) if inputs is not None else count)]
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
        if kind in (codec.PASS, codec.SPLICE):
            if inputs is None:
                raise AssertionError(f"timer {i}: a pass or splice entry, but a timer has no record")
            r = inputs[i]
            if kind == codec.SPLICE:
                r, pos = _spliced(buf, pos, r)
        else:
            length, body = codec.read_varint(buf, pos)
            (r,) = codec.read_records(buf[pos : body + length], 1)
            pos = body + length
        e = Emitted(outputs[o], r.key, r.value, r.headers, ctx.base_timestamp + r.timestamp_delta)
        if got[i].kind != "emit":
            got[i] = TestOutcome("emit")
        got[i].emitted.append(e)
    return got


def _spliced(buf, pos, r):
    """The record `r` with the spans of a splice entry (at `pos`) applied, and where the
    entry ends; AssertionError when they do not fit its value, as the host refuses them."""
    count, pos = codec.read_uvarint(buf, pos)
    value = r.value
    parts, last = [], 0
    for _ in range(count):
        start, pos = codec.read_uvarint(buf, pos)
        end, pos = codec.read_uvarint(buf, pos)
        n, pos = codec.read_uvarint(buf, pos)
        if value is None or start < last or end < start or end > len(value):
            raise AssertionError(
                f"splice span {start}..{end} does not fit a value of {None if value is None else len(value)} bytes"
            )
        parts += (value[last:start], buf[pos : pos + n])
        last = end
        pos += n
    if value is not None:
        parts.append(value[last:])
        value = b"".join(parts)
    return codec.RawRecord(r.timestamp_delta, r.offset_delta, r.key, value, r.headers), pos


def _check(case, got: TestOutcome, default_output: str) -> None:
    name = case["name"]
    want = case["expect"]
    fail = f"case {name!r}: expected {want}, got {got.describe()}"
    if want in ("drop", "late"):
        assert got.kind == want, fail
        return
    if "reject" in want:
        assert got.kind == "reject" and want["reject"] in got.reason, fail
        return
    emits = want["emit"]
    assert got.kind == "emit" and len(got.emitted) == len(emits), fail
    for w, h in zip(emits, got.emitted):
        why = _emit_mismatch(w, h, default_output)
        assert why is None, f"{fail} ({why})"


def _emit_mismatch(w: dict, h: Emitted, default_output: str) -> str | None:
    """Why an emitted record is not the expected one, or None."""
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
    if not ok:
        return f"value {h.value_str()!r}, expected {v!r}"
    if h.output != w.get("output", default_output):
        return f"output {h.output!r}, expected {w.get('output', default_output)!r}"
    if "key" in w and h.key != w["key"].encode("utf-8"):
        return f"key {h.key!r}, expected {w['key']!r}"
    for k, hv in w.get("headers", {}).items():
        if (k, hv.encode("utf-8")) not in h.headers:
            return f"no header {k}={hv!r}"
    return None
