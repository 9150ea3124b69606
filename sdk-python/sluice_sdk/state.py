"""Keyed state and event-time timers for stateful transforms.

State is scoped to the input partition being processed, committed by the host atomically
with the outputs of the records that changed it and restored after a restart or a crash.
A plugin that uses it is built against the `transform` world
(`scripts/build-python-plugin --stateful`); the deployment then runs stateful, with a
changelog topic, checkpoints and the watermark.

```python
from sluice_sdk import Outcome, state, timers

def count(record):
    n = state.get_json(record.key) or 0
    state.put_json(record.key, n + 1)
    timers.set(record.key, record.event_time // 60_000 * 60_000 + 60_000)
    return Outcome.drop()
```

Changes are cached for the call (a batch, or a round of timers) and reach the host in one
`apply` when it ends; a call that fails leaves nothing behind. Keys are at most 64 KiB and
values 4 MiB; a larger one raises `Error`, which rejects the record.
"""

from __future__ import annotations

import json as _json

MAX_KEY = 64 * 1024
MAX_VALUE = 4 * 1024 * 1024

_PUT, _DELETE, _SET_TIMER, _CANCEL_TIMER = 0, 1, 2, 3

try:  # Inside a component built against the `transform` world.
    from wit_world.imports import state as _host
except ImportError:  # Natively, or a component built without state.
    _host = None


def _in_component() -> bool:
    from . import _host as host_imports

    return host_imports is not None


class _Native:
    """The host's side natively: the environment `sluice_sdk.testing` sets up."""

    @staticmethod
    def env():
        from . import testing

        return testing.ENV

    def get(self, key: bytes):
        return self.env().state.get(key)

    def scan(self, prefix: bytes, after, limit: int) -> list:
        keys = sorted(k for k in self.env().state if k.startswith(prefix))
        if after is not None:
            keys = [k for k in keys if k > after]
        return [(k, self.env().state[k]) for k in keys[:limit]]

    def apply(self, ops: list) -> None:
        env = self.env()
        for op, a, b in ops:
            if op == _PUT:
                env.state[a] = b
            elif op == _DELETE:
                env.state.pop(a, None)
            elif op == _SET_TIMER:
                env.timers.add((a, b))
            else:
                env.timers.discard((a, b))


class _Wasm:
    """The host's `state` interface."""

    def get(self, key: bytes):
        return _host.get(key)

    def scan(self, prefix: bytes, after, limit: int) -> list:
        from .codec import read_uvarint

        buf = _host.scan(prefix, after, limit)
        out = []
        pos = 0
        while pos < len(buf):
            n, pos = read_uvarint(buf, pos)
            k = bytes(buf[pos : pos + n])
            pos += n
            n, pos = read_uvarint(buf, pos)
            out.append((k, bytes(buf[pos : pos + n])))
            pos += n
        return out

    def apply(self, ops: list) -> None:
        from .codec import put_uvarint

        buf = bytearray()
        for op, a, b in ops:
            buf.append(op)
            if op == _PUT:
                put_uvarint(buf, len(a))
                buf += a
                put_uvarint(buf, len(b))
                buf += b
            elif op == _DELETE:
                put_uvarint(buf, len(a))
                buf += a
            else:
                buf += int(a).to_bytes(8, "little", signed=True)
                put_uvarint(buf, len(b))
                buf += b
        _host.apply(bytes(buf))


_BACKEND = None


def _backend():
    """The host's side; raises `Error` (rejecting the record that uses state) in a
    component built without state."""
    global _BACKEND
    if _BACKEND is not None:
        return _BACKEND
    if _host is not None:
        _BACKEND = _Wasm()
        return _BACKEND
    if _in_component():
        from . import Error

        raise Error(
            "this plugin was built without state: build it against the `transform` world "
            "(scripts/build-python-plugin --stateful)"
        )
    return _Native()  # not cached: the harness may swap environments


_MISSING = object()


class _Call:
    """One call's view: values read or written so far, and the changes to send."""

    def __init__(self):
        self.values: dict = {}  # key -> bytes | None (None = no value)
        self.changed: dict = {}  # key -> bytes | None (None = delete), in change order
        self.timer_ops: list = []

    def ops(self) -> list:
        out = [(_DELETE if v is None else _PUT, k, v) for k, v in self.changed.items()]
        out.extend(self.timer_ops)
        return out


_CALL = _Call()


def begin_call() -> None:
    global _CALL
    _CALL = _Call()


def end_call() -> None:
    """Sends the call's changes to the host (the SDK's call machinery runs this)."""
    global _CALL
    call, _CALL = _CALL, _Call()
    ops = call.ops()
    if ops:
        _backend().apply(ops)


def discard_call() -> None:
    global _CALL
    _CALL = _Call()


def call_has_changes() -> bool:
    """Whether the call so far changed state or timers."""
    return bool(_CALL.ops())


def _key(key) -> bytes:
    from . import Error, _bytes

    if key is None:
        key = b""
    k = key.encode("utf-8") if isinstance(key, str) else _bytes(key)
    if not isinstance(k, bytes):
        raise Error(f"a state key must be bytes or str, not {type(key).__name__}")
    if len(k) > MAX_KEY:
        raise Error(f"a state key of {len(k)} bytes is longer than {MAX_KEY}")
    return k


def get(key) -> bytes | None:
    """The value of `key` (bytes or str), if it has one."""
    k = _key(key)
    v = _CALL.values.get(k, _MISSING)
    if v is _MISSING:
        v = _backend().get(k)
        v = None if v is None else bytes(v)
        _CALL.values[k] = v
    return v


def put(key, value) -> None:
    """Sets the value of `key`: bytes, str, or anything else as JSON."""
    from . import Error, _bytes

    _backend()
    k = _key(key)
    v = _bytes(value)
    if v is None:
        raise Error("a state value cannot be None: use state.delete")
    if len(v) > MAX_VALUE:
        raise Error(f"a state value of {len(v)} bytes is larger than {MAX_VALUE}")
    _CALL.values[k] = v
    _CALL.changed.pop(k, None)
    _CALL.changed[k] = v


def delete(key) -> None:
    _backend()
    k = _key(key)
    _CALL.values[k] = None
    _CALL.changed.pop(k, None)
    _CALL.changed[k] = None


def get_json(key):
    """The value of `key` parsed as JSON, or None."""
    from . import Error

    v = get(key)
    if v is None:
        return None
    try:
        return _json.loads(v)
    except ValueError as e:
        raise Error(f"state value of {key!r} is not JSON: {e}") from None


def put_json(key, value) -> None:
    put(key, _json.dumps(value, separators=(",", ":")).encode("utf-8"))


def scan(prefix=b"", page: int = 256):
    """(key, value) pairs of the keys starting with `prefix`, in byte order, with this
    call's changes so far."""
    p = _key(prefix)
    backend = _backend()
    if _CALL.changed or _CALL.timer_ops:
        # The host's view must include this call's changes: send them now (a failing call
        # still undoes them, on the host's side).
        values = _CALL.values
        end_call()
        _CALL.values = values
    return _pages(backend, p, page)


def _pages(backend, p: bytes, page: int):
    after = None
    while True:
        entries = backend.scan(p, after, page)
        if not entries:
            return
        for k, v in entries:
            yield k, v
        after = entries[-1][0]


class timers:  # noqa: N801 - a namespace, like the Rust SDK's `timers` module
    """Event-time timers: `on_timer` gets one once the partition's watermark reaches its
    time. A timer is unique per (key, time)."""

    @staticmethod
    def set(key, at_ms: int) -> None:
        """Fires `key` once the watermark reaches `at_ms`."""
        _backend()
        _CALL.timer_ops.append((_SET_TIMER, int(at_ms), _key(key)))

    @staticmethod
    def cancel(key, at_ms: int) -> None:
        """Removes the timer (key, at_ms) if it is set."""
        _backend()
        _CALL.timer_ops.append((_CANCEL_TIMER, int(at_ms), _key(key)))
