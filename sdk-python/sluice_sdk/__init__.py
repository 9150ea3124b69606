"""Write Sluice transforms in Python: one function from a record to an outcome.

```python
import sluice_sdk
from sluice_sdk import Outcome

def shout(record):
    text = record.value_str()
    if text is None:
        return Outcome.drop()
    return Outcome.keep_with_value(text.upper())

WitWorld = sluice_sdk.transform(shout)
```

With state built once per instance from the deployment's config:

```python
def setup():
    return sluice_sdk.config("field") or "id"

def has_field(field, record):
    return Outcome.keep() if field in record.json() else Outcome.drop()

WitWorld = sluice_sdk.transform(has_field, init=setup)
```

Stateful, with keyed state and event-time timers (`sluice_sdk.state`): a count per key per
minute, emitted when the partition's watermark passes the minute's end:

```python
from sluice_sdk import OutRecord, Outcome, state, timers

def count(record):
    end = record.event_time // 60_000 * 60_000 + 60_000
    key = b"%d/" % end + (record.key or b"")
    state.put_json(key, (state.get_json(key) or 0) + 1)
    timers.set(key, end)
    return Outcome.drop()

def close(timer):
    n = state.get_json(timer.key)
    state.delete(timer.key)
    return Outcome.emit(OutRecord({"window_end": timer.at, "count": n}))

WitWorld = sluice_sdk.transform(count, on_timer=close)
```

`scripts/build-python-plugin DIR OUT.wasm` builds the module `app` of DIR (which must define
`WitWorld`) into a component for `sluice plugin push` with componentize-py, in a venv of
its own; `--stateful` builds against the `transform` world (with state) instead of
`transform-stateless`.
`sluice_sdk.testing.Harness` runs the same function natively, with the case tables
(`cases.json`) the Rust SDK uses.

A transform that raises `sluice_sdk.Error` rejects the record: it goes to the deployment's
dead-letter topic with the message as the reason. Any other exception rejects it too, with
the exception's type and message (an instance is not restarted for it: Python instances
are expensive to start). Runaway loops and memory exhaustion are stopped by the host like
any plugin's.
"""

from __future__ import annotations

import json as _json
from enum import IntEnum

from . import codec
from . import state as state
from . import text as text
from .batch import Batch
from .state import timers as timers

__all__ = [
    "Batch",
    "Error",
    "Level",
    "OutRecord",
    "Outcome",
    "Record",
    "Timer",
    "config",
    "log",
    "lookup",
    "outputs",
    "state",
    "text",
    "timers",
    "transform",
    "transform_batch",
]

try:  # Inside a component: the host's imports (bindings made by componentize-py).
    from wit_world.imports import host as _host
except ImportError:  # Natively: the environment `sluice_sdk.testing` sets up.
    _host = None


class Error(Exception):
    """Raised by a transform: the record is rejected with this message as the reason."""


class Level(IntEnum):
    TRACE = 0
    DEBUG = 1
    INFO = 2
    WARN = 3
    ERROR = 4


def _env():
    from . import testing

    return testing.ENV


def config(key: str) -> str | None:
    """A value of the deployment's config map."""
    if _host is not None:
        return _host.config(key)
    return _env().config.get(key)


def outputs() -> list[str]:
    """The deployment's output topics, in order."""
    if _host is not None:
        return list(_host.outputs())
    return list(_env().outputs)


def lookup(table: str, key: bytes | str) -> bytes | None:
    """The latest value of `key` in a lookup table the deployment declares."""
    if isinstance(key, str):
        key = key.encode()
    if _host is not None:
        return _host.lookup(table, key)
    return _env().tables.get(table, {}).get(key)


def log(level: Level, message: str) -> None:
    """A log line, tagged by the host with plugin, version, partition and offset."""
    if _host is not None:
        _host.log(_host.Level(int(level)), message)
    else:
        _env().logs.append((Level(level), message))


class Record:
    """One input record, decoded from the batch."""

    __slots__ = ("_raw", "_ctx", "index")

    def __init__(self, raw: codec.RawRecord, ctx, index: int):
        self._raw = raw
        self._ctx = ctx
        self.index = index

    @property
    def key(self) -> bytes | None:
        return self._raw.key

    @property
    def value(self) -> bytes | None:
        return self._raw.value

    @property
    def headers(self) -> list[tuple[str, bytes | None]]:
        return list(self._raw.headers)

    def key_str(self) -> str | None:
        return _text(self._raw.key)

    def value_str(self) -> str | None:
        """The value as text, if it is UTF-8."""
        return _text(self._raw.value)

    def json(self):
        """The value parsed as JSON; raises `Error` (rejecting the record) if it is not."""
        try:
            return _json.loads(self._raw.value if self._raw.value is not None else b"null")
        except ValueError as e:
            raise Error(f"invalid JSON: {e}") from None

    def header(self, key: str) -> bytes | None:
        for k, v in self._raw.headers:
            if k == key:
                return v
        return None

    @property
    def timestamp(self) -> int:
        """Milliseconds since the epoch."""
        return self._ctx.base_timestamp + self._raw.timestamp_delta

    @property
    def event_time(self) -> int:
        """When the event happened (ms since the epoch): the JSON field the deployment
        names in `event_time.field`, or else the record's timestamp. Watermarks and
        windows go by this time."""
        times = getattr(self._ctx, "event_times", None)
        if times:
            return times[self.index]
        return self.timestamp

    @property
    def watermark(self) -> int:
        """The partition's watermark for this batch (events before it are late)."""
        return getattr(self._ctx, "watermark", NO_WATERMARK)

    def key_or_field(self, field: str | None = None) -> bytes | None:
        """What a record is grouped by: its key, or (with `field`) the text of that JSON
        field of the value — a name, dotted path or JSON pointer. None when there is no
        key or no such field."""
        if field is None:
            return self.key
        v = path(self.json(), field)
        if v is None:
            return None
        return (v if isinstance(v, str) else _json.dumps(v, separators=(",", ":"))).encode()

    @property
    def offset(self) -> int:
        return self._ctx.base_offset + self._raw.offset_delta

    @property
    def topic(self) -> str:
        return self._ctx.topic

    @property
    def partition(self) -> int:
        return self._ctx.partition

    def to_out(self) -> "OutRecord":
        """An owned copy to change and emit."""
        return OutRecord(self.value, key=self.key, headers=self.headers, timestamp=self.timestamp)


NO_WATERMARK = -(2**63)
"""The watermark before there is one."""


def path(value, field: str):
    """The element of a parsed JSON value at a name, dotted path (`a.b.0`) or JSON pointer
    (`/a/b/0`), or None."""
    if field.startswith("/"):
        parts = [p.replace("~1", "/").replace("~0", "~") for p in field[1:].split("/")]
    else:
        parts = field.split(".")
    cur = value
    for part in parts:
        if isinstance(cur, dict):
            if part not in cur:
                return None
            cur = cur[part]
        elif isinstance(cur, list) and part.isdigit() and int(part) < len(cur):
            cur = cur[int(part)]
        else:
            return None
    return cur


class Timer:
    """A timer that fired: the key it was set with and the time it was set for."""

    __slots__ = ("key", "at", "watermark")

    def __init__(self, key: bytes, at: int, watermark: int):
        self.key = key
        self.at = at
        self.watermark = watermark

    def key_str(self) -> str | None:
        return _text(self.key)


def _text(b: bytes | None) -> str | None:
    if b is None:
        return None
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _bytes(v) -> bytes | None:
    if v is None or isinstance(v, bytes):
        return v
    if isinstance(v, (bytearray, memoryview)):
        return bytes(v)
    if isinstance(v, str):
        return v.encode("utf-8")
    return _json.dumps(v, separators=(",", ":")).encode("utf-8")


class OutRecord:
    """A record to emit. A value that is not bytes or str is written as JSON."""

    __slots__ = ("key", "value", "headers", "timestamp")

    def __init__(self, value=None, key=None, headers=None, timestamp: int | None = None):
        self.value = _bytes(value)
        self.key = _bytes(key)
        self.headers = [(k, _bytes(v)) for k, v in (headers or [])]
        self.timestamp = timestamp


class Outcome:
    """What happens to one input record."""

    __slots__ = ("reason", "emissions")

    def __init__(self, reason=None, emissions=()):
        self.reason = reason
        self.emissions = list(emissions)

    @staticmethod
    def keep() -> "Outcome":
        """Pass the input on unchanged to the default output (its bytes do not cross back)."""
        return Outcome(emissions=[("keep", None, None)])

    @staticmethod
    def keep_to(output: str) -> "Outcome":
        return Outcome(emissions=[("keep", output, None)])

    @staticmethod
    def keep_with_value(value) -> "Outcome":
        """The input with a new value (key, headers and timestamp kept)."""
        return Outcome(emissions=[("value", None, _bytes(value))])

    @staticmethod
    def keep_spliced(spans) -> "Outcome":
        """The input with spans of its value replaced: `(start, end, replacement)` byte
        offsets into the value, in increasing order; only the edits leave the plugin."""
        spans = [(s, e, _bytes(r) or b"") for s, e, r in spans]
        if not spans:
            return Outcome.keep()
        return Outcome(emissions=[("splice", None, spans)])

    @staticmethod
    def emit(record: OutRecord) -> "Outcome":
        return Outcome(emissions=[("record", None, record)])

    @staticmethod
    def emit_to(output: str, record: OutRecord) -> "Outcome":
        return Outcome(emissions=[("record", output, record)])

    def and_emit(self, record: OutRecord, output: str | None = None) -> "Outcome":
        """Also emit another record (fan-out)."""
        self.reason = None
        self.emissions.append(("record", output, record))
        return self

    @staticmethod
    def drop() -> "Outcome":
        return Outcome()

    @staticmethod
    def reject(reason: str) -> "Outcome":
        """Send the record to the dead-letter topic with a reason."""
        return Outcome(reason=str(reason))


def _reason(e: BaseException) -> str:
    if isinstance(e, Error):
        return str(e)
    return f"{type(e).__name__}: {e}"


def _put_reject(out: bytearray, i: int, reason: str) -> None:
    reason = reason.encode("utf-8")
    out.append(codec.REJECT)
    codec.put_uvarint(out, i)
    codec.put_uvarint(out, len(reason))
    out += reason


def _answer(out: bytearray, i: int, outcome, index: dict, names, ctx, raw, timestamp) -> None:
    """Encodes the entries of one outcome (input `i`; `raw` is None for a timer)."""
    if outcome.reason is not None:
        _put_reject(out, i, outcome.reason)
        return
    entries = bytearray()
    for kind, target, what in outcome.emissions:
        o = 0 if target is None else index.get(target)
        if o is None:
            _put_reject(out, i, f"emitted to {target!r}, which is not one of the outputs {names}")
            return
        if raw is None and kind != "record":
            _put_reject(out, i, "a timer has no input record to keep: emit a record instead")
            return
        if kind == "keep":
            entries.append(codec.PASS)
            codec.put_uvarint(entries, i)
            codec.put_uvarint(entries, o)
            continue
        if kind == "splice":
            entries.append(codec.SPLICE)
            for n in (i, o, len(what)):
                codec.put_uvarint(entries, n)
            for start, end, repl in what:
                for n in (start, end, len(repl)):
                    codec.put_uvarint(entries, n)
                entries += repl
            continue
        entries.append(codec.EMIT)
        codec.put_uvarint(entries, i)
        codec.put_uvarint(entries, o)
        if kind == "value":
            codec.put_record(entries, raw.timestamp_delta, raw.key, what, raw.headers)
        else:
            ts = timestamp if what.timestamp is None else what.timestamp
            codec.put_record(entries, ts - ctx.base_timestamp, what.key, what.value, what.headers)
    out += entries


def _call(fn, arg):
    try:
        outcome = fn(arg)
        if not isinstance(outcome, Outcome):
            raise TypeError(f"the transform returned {type(outcome).__name__}, not an Outcome")
        return outcome
    except Exception as e:  # noqa: BLE001 - every failure of the plugin's code rejects
        return Outcome.reject(_reason(e))


def run_batch(ctx, records: bytes, fn) -> bytes:
    """Runs `fn(record)` over a batch (the contract's `process`) and encodes the outcomes."""
    names = outputs()
    index = {n: i for i, n in enumerate(names)}
    out = bytearray()
    for i, raw in enumerate(codec.read_records(records, ctx.record_count)):
        rec = Record(raw, ctx, i)
        _answer(out, i, _call(fn, rec), index, names, ctx, raw, rec.timestamp)
    return bytes(out)


def run_whole_batch(ctx, records: bytes, fn) -> bytes:
    """Runs `fn(batch)` over a batch (`transform_batch`) and encodes its answers."""
    index = None

    def outputs_index():
        nonlocal index
        if index is None:
            index = {n: i for i, n in enumerate(outputs())}
        return index

    batch = Batch(ctx, records, outputs_index)
    if text._host is None:
        buf = records
        text._set_batch(
            [
                (None if ks < 0 else buf[ks:ke], None if vs < 0 else buf[vs:ve])
                for _, _, ks, ke, vs, ve in codec.record_spans(buf, ctx.record_count)
            ]
        )
    try:
        fn(batch)
    finally:
        if text._host is None:
            text._set_batch(None)
    return batch._entries()


def run_timers(ctx, timers_bytes: bytes, fn) -> bytes:
    """Runs `fn(timer)` over fired timers (the contract's `on-timers`) and encodes the
    outcomes; a record emitted without a timestamp gets the timer's time."""
    names = outputs()
    index = {n: i for i, n in enumerate(names)}
    out = bytearray()
    for i, (at, key) in enumerate(codec.read_timers(timers_bytes, ctx.record_count)):
        t = Timer(key, at, ctx.base_timestamp)
        _answer(out, i, _call(fn, t), index, names, ctx, None, at)
    return bytes(out)


def in_call(body):
    """Runs `body()` inside one call's state cache: its changes reach the host when it
    returns, and are dropped when it raises."""
    state.begin_call()
    try:
        result = body()
    except BaseException:
        state.discard_call()
        raise
    state.end_call()
    return result


def bind(fn, on_timer, instance, has_init: bool):
    """`fn` and `on_timer` with the instance value (from `init`) bound, if there is one."""
    if not has_init:
        return fn, on_timer
    return (lambda r: fn(instance, r)), (
        None if on_timer is None else (lambda t: on_timer(instance, t))
    )


def _exit(e: BaseException):
    """Ends the instance at once (status 1) with one line on stderr: letting the exception
    out runs CPython's traceback printing and finalization, tens of millions of
    instructions that would end in "fuel exhausted" instead of "exited"."""
    import os
    import sys

    sys.stderr.write(f"{type(e).__name__}: {e}\n")
    sys.stderr.flush()
    os._exit(1)


def transform_batch(fn, init=None, on_timer=None):
    """The component's `WitWorld` for `fn(batch)` — or `fn(instance, batch)` with `init`:
    one call per batch with a `sluice_sdk.Batch`, for plugins whose work per record must
    stay small (with `sluice_sdk.text`'s batch-wide calls, a record the plugin does not
    touch costs it nothing). Records `fn` does not answer are kept. An exception fails the
    batch: the host then runs its records one at a time, and dead-letters the one that
    raises with the reason. `on_timer` as for `transform`."""
    return transform(fn, init=init, on_timer=on_timer, _whole=True)


def transform(fn, init=None, on_timer=None, _whole=False):
    """The component's `WitWorld` class for `fn(record)` — or `fn(instance, record)` with
    `init`, whose result (built once per instance from the config) is `instance`.
    `on_timer(timer)` (`on_timer(instance, timer)` with `init`) answers fired timers
    with an outcome like a record's; without it, fired timers are dropped."""

    def _err(message: str):
        from componentize_py_types import Err

        return Err(message)

    class WitWorld:
        bound = bind(fn, on_timer, None, False)

        def init(self) -> None:
            if init is None:
                return
            state.begin_call()
            try:
                WitWorld.bound = bind(fn, on_timer, init(), True)
            except Exception as e:  # noqa: BLE001 - reported as the init error
                raise _err(_reason(e)) from None
            # init runs for every instance the host starts: state written there would be
            # written again and again, so it is refused rather than dropped.
            if state.call_has_changes():
                state.discard_call()
                raise _err("init wrote state: state can only be written while processing records or timers (init runs again for every instance of the plugin); set initial values when a record first needs them") from None

        def process(self, ctx, records: bytes) -> bytes:
            f, _ = WitWorld.bound
            run = run_whole_batch if _whole else run_batch
            try:
                return in_call(lambda: run(ctx, records, f))
            except Exception as e:  # noqa: BLE001 - the batch fails with the reason
                raise _err(_reason(e)) from None
            except BaseException as e:  # sys.exit and the like: the instance ends
                _exit(e)

        def on_timers(self, ctx, fired: bytes) -> bytes:
            _, h = WitWorld.bound
            if h is None:
                return b""
            try:
                return in_call(lambda: run_timers(ctx, fired, h))
            except Exception as e:  # noqa: BLE001 - the call fails with the reason
                raise _err(_reason(e)) from None
            except BaseException as e:  # sys.exit and the like: the instance ends
                _exit(e)

    return WitWorld
