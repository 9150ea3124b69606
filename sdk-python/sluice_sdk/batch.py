"""A whole batch at once, for transforms whose work per record must stay small: nothing is
decoded until it is asked for, records the function does not answer are passed on
unchanged (their bytes never cross back), and `splice` sends only the edits of a value.

```python
import sluice_sdk
from sluice_sdk import text

CARD = text.Pattern([r"\\b[0-9]{16}\\b"])

def redact(batch):
    hits = CARD.find_in_batch(text.VALUE)      # one host call for the whole batch
    for k in range(0, len(hits), 4):
        batch.splice(hits[k], [(hits[k + 2], hits[k + 3], b"################")])

WitWorld = sluice_sdk.transform_batch(redact)
```
"""

from __future__ import annotations

from . import codec, text

_NULL = (1 << 32) - 1

_UV = []
"""uvarint encodings of small numbers."""


def _grow_uv(n):
    for i in range(len(_UV), n):
        b = bytearray()
        codec.put_uvarint(b, i)
        _UV.append(bytes(b))


_SPLICE = bytes((codec.SPLICE,))


def uv(n: int) -> bytes:
    if n < len(_UV):
        return _UV[n]
    b = bytearray()
    codec.put_uvarint(b, n)
    return bytes(b)


_PASS = bytearray()
_PASS_AT = [0]
"""Pass entries to output 0 for inputs 0, 1, ... back to back, and where each starts."""


def _pass_table(n):
    while len(_PASS_AT) <= n:
        i = len(_PASS_AT) - 1
        _PASS.append(codec.PASS)
        _PASS.extend(uv(i))
        _PASS.append(0)
        _PASS_AT.append(len(_PASS))
    return _PASS, _PASS_AT


class Batch:
    """The records of one `process` call. Read with `value(i)`, `key(i)` or `record(i)`
    (decoded when first asked for); answer with `keep`, `splice`, `emit`, `reject` or
    `drop`. A record without an answer is kept: it goes to the default output unchanged.
    Several `keep`/`splice`/`emit` answers for one record fan out; `reject` and `drop`
    replace what it had."""

    __slots__ = ("ctx", "_buf", "_n", "_at", "_parts", "_answers", "_index")

    def __init__(self, ctx, records: bytes, output_index):
        self.ctx = ctx
        self._buf = records
        self._n = ctx.record_count
        self._at = None
        self._parts = [None, None]
        self._answers = {}
        self._index = output_index
        if len(_UV) < 4096:  # built on first use, not at import (a smaller snapshot)
            _grow_uv(4096)

    def __len__(self):
        return self._n

    def _spans(self):
        """Per record: (start, end, key start, key end, value start, value end), key or
        value -1 when null."""
        if self._at is None:
            self._at = codec.record_spans(self._buf, self._n)
        return self._at

    def _part_spans(self, part):
        """Flat [start, end, ...] of each record's key or value (the host's answer in a
        component: no decoding here); a null part's start is -1 or 2**32 - 1."""
        got = self._parts[part]
        if got is None:
            got = text.part_spans_batch(part)
            if got is None:
                k = 4 if part == text.VALUE else 2
                got = [x for s in self._spans() for x in (s[k], s[k + 1])]
            self._parts[part] = got
        return got

    def value(self, i: int) -> bytes | None:
        p = self._parts[1] or self._part_spans(1)
        s = p[2 * i]
        return None if s < 0 or s == _NULL else self._buf[s : p[2 * i + 1]]

    def key(self, i: int) -> bytes | None:
        p = self._parts[0] or self._part_spans(0)
        s = p[2 * i]
        return None if s < 0 or s == _NULL else self._buf[s : p[2 * i + 1]]

    def record(self, i: int):
        """The whole record (`sluice_sdk.Record`), decoded."""
        from . import Record

        s = self._spans()[i]
        (raw,) = codec.read_records(self._buf[s[0] : s[1]], 1)
        return Record(raw, self.ctx, i)

    def _output(self, output):
        if output is None:
            return 0
        o = self._index().get(output)
        if o is None:
            from . import Error

            raise Error(f"output {output!r} is not one of the deployment's outputs")
        return o

    def _add(self, i, entry):
        if not 0 <= i < self._n:
            raise IndexError(f"record {i} of a batch of {self._n}")
        a = self._answers.get(i)
        if not a:  # no answer yet, or dropped
            self._answers[i] = entry
        elif a[0] == codec.REJECT:
            pass
        else:
            self._answers[i] = a + entry

    def keep(self, i: int, output: str | None = None) -> None:
        """Pass record `i` on unchanged (to `output`, or the default output)."""
        self._add(i, bytes((codec.PASS,)) + uv(i) + uv(self._output(output)))

    def splice(self, i: int, spans, output: str | None = None) -> None:
        """Pass record `i` on with spans of its value replaced: `spans` are `(start, end,
        replacement)` — byte offsets into the value, in increasing order, not overlapping;
        the replacement bytes or str. Only the edits leave the plugin; the host builds
        the value."""
        u = _UV
        try:
            parts = [_SPLICE, u[i], u[0] if output is None else uv(self._output(output)), u[len(spans)]]
            for start, end, repl in spans:
                if repl.__class__ is str:
                    repl = repl.encode("utf-8")
                parts += (u[start], u[end], u[len(repl)], repl)
        except IndexError:  # a number past the table: the general encoding
            parts = [_SPLICE, uv(i), uv(self._output(output)), uv(len(spans))]
            for start, end, repl in spans:
                if isinstance(repl, str):
                    repl = repl.encode("utf-8")
                parts += (uv(start), uv(end), uv(len(repl)), repl)
        entry = b"".join(parts)
        if i in self._answers or not 0 <= i < self._n:
            self._add(i, entry)
        else:
            self._answers[i] = entry

    def emit(self, i: int, record, output: str | None = None) -> None:
        """Emit a new record (`sluice_sdk.OutRecord`) for record `i`; without a timestamp
        it gets record `i`'s."""
        o = self._output(output)
        if record.timestamp is None:
            s = self._spans()[i]
            (raw,) = codec.read_records(self._buf[s[0] : s[1]], 1)
            delta = raw.timestamp_delta
        else:
            delta = record.timestamp - self.ctx.base_timestamp
        e = bytearray((codec.EMIT,))
        e += uv(i)
        e += uv(o)
        codec.put_record(e, delta, record.key, record.value, record.headers)
        self._add(i, bytes(e))

    def reject(self, i: int, reason: str) -> None:
        """Send record `i` to the dead-letter topic with a reason."""
        r = str(reason).encode("utf-8")
        self._answers[i] = bytes((codec.REJECT,)) + uv(i) + uv(len(r)) + r

    def drop(self, i: int) -> None:
        """Record `i` goes nowhere."""
        self._answers[i] = b""

    def _entries(self) -> bytes:
        n = self._n
        table, at = _pass_table(n)
        answers = self._answers
        if not answers:
            return bytes(table[: at[n]])
        out = []
        prev = 0
        for i in sorted(answers):
            if i > prev:
                out.append(table[at[prev] : at[i]])
            out.append(answers[i])
            prev = i + 1
        if prev < n:
            out.append(table[at[prev] : at[n]])
        return b"".join(out)
