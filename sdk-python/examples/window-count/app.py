"""Counts records per key per tumbling window of event time — the Rust `window-count`
example in Python, passing the same `plugins/window-count/cases.json`. When the partition's
watermark passes a window's end, emits `{"key","window_start","window_end","count"}` (keyed
by the key, timestamped at the window's end) to the first output.

Config: `window_ms` (window size, default 60000), `key_field` (a JSON field of the value to
count by — name, dotted path or JSON pointer; default: the record key). Records without a
key count under `""`. Built with `scripts/build-python-plugin --stateful`.

State layout: one key per open window, `<window end, 8 bytes big-endian>` + the key, holding
the count; a timer with the same key at the window's end.
"""

import sluice_sdk
from sluice_sdk import Error, OutRecord, Outcome, config, state, timers


class Counter:
    def __init__(self):
        raw = config("window_ms") or "60000"
        if not raw.isdigit() or int(raw) <= 0:
            raise Error(f"window_ms must be a positive number of milliseconds, not {raw!r}")
        self.window_ms = int(raw)
        self.key_field = config("key_field")


def _slot(end: int, key: bytes) -> bytes:
    return (end + 2**63).to_bytes(8, "big") + key


def count(c: Counter, record) -> Outcome:
    key = record.key_or_field(c.key_field) or b""
    end = record.event_time // c.window_ms * c.window_ms + c.window_ms
    slot = _slot(end, key)
    n = state.get(slot)
    state.put(slot, b"%d" % (int(n) + 1 if n is not None else 1))
    if n is None:
        timers.set(slot, end)
    return Outcome.drop()


def close(c: Counter, timer) -> Outcome:
    n = state.get(timer.key)
    if n is None:
        return Outcome.drop()
    state.delete(timer.key)
    key = timer.key[8:]
    value = {
        "key": key.decode("utf-8", "replace"),
        "window_start": timer.at - c.window_ms,
        "window_end": timer.at,
        "count": int(n),
    }
    return Outcome.emit(OutRecord(value, key=key))


WitWorld = sluice_sdk.transform(count, init=Counter, on_timer=close)
