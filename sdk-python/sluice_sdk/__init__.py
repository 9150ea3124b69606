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

`componentize-py -d wit -w transform componentize app -p . -p sdk-python -o app.wasm`
builds the module `app` (which must define `WitWorld`) into a component for
`sluice plugin push`; `scripts/build-python-plugin` does that in a venv of its own.
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

__all__ = [
    "Error",
    "Level",
    "OutRecord",
    "Outcome",
    "Record",
    "config",
    "log",
    "lookup",
    "outputs",
    "transform",
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


def run_batch(ctx, records: bytes, fn, state, has_state: bool) -> bytes:
    """Runs `fn` over a batch (the contract's `process`) and encodes the outcomes."""
    names = outputs()
    index = {n: i for i, n in enumerate(names)}
    out = bytearray()
    for i, raw in enumerate(codec.read_records(records, ctx.record_count)):
        rec = Record(raw, ctx, i)
        try:
            outcome = fn(state, rec) if has_state else fn(rec)
            if not isinstance(outcome, Outcome):
                raise TypeError(f"the transform returned {type(outcome).__name__}, not an Outcome")
        except Exception as e:  # noqa: BLE001 - every failure of the plugin's code rejects
            outcome = Outcome.reject(_reason(e))
        if outcome.reason is not None:
            reason = outcome.reason.encode("utf-8")
            out.append(codec.REJECT)
            codec.put_uvarint(out, i)
            codec.put_uvarint(out, len(reason))
            out += reason
            continue
        entries = bytearray()
        for kind, target, what in outcome.emissions:
            o = 0 if target is None else index.get(target)
            if o is None:
                entries = None
                reason = f"emitted to {target!r}, which is not one of the outputs {names}"
                reason = reason.encode("utf-8")
                out.append(codec.REJECT)
                codec.put_uvarint(out, i)
                codec.put_uvarint(out, len(reason))
                out += reason
                break
            if kind == "keep":
                entries.append(codec.PASS)
                codec.put_uvarint(entries, i)
                codec.put_uvarint(entries, o)
                continue
            entries.append(codec.EMIT)
            codec.put_uvarint(entries, i)
            codec.put_uvarint(entries, o)
            if kind == "value":
                codec.put_record(entries, raw.timestamp_delta, raw.key, what, raw.headers)
            else:
                ts = rec.timestamp if what.timestamp is None else what.timestamp
                codec.put_record(
                    entries, ts - ctx.base_timestamp, what.key, what.value, what.headers
                )
        if entries is not None:
            out += entries
    return bytes(out)


def transform(fn, init=None):
    """The component's `WitWorld` class for `fn(record)` — or `fn(state, record)` with
    `init`, whose result (built once per instance from the config) is `state`."""

    def _err(message: str):
        from componentize_py_types import Err

        return Err(message)

    class WitWorld:
        state = None

        def init(self) -> None:
            if init is None:
                return
            try:
                WitWorld.state = init()
            except Exception as e:  # noqa: BLE001 - reported as the init error
                raise _err(_reason(e)) from None

        def process(self, ctx, records: bytes) -> bytes:
            try:
                return run_batch(ctx, records, fn, WitWorld.state, init is not None)
            except codec.CodecError as e:
                raise _err(str(e)) from None

        def on_timers(self, ctx, timers: bytes) -> bytes:
            return b""

    return WitWorld
