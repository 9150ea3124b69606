"""The host's text primitives (contract 0.2.1; `find_in_json_batch` and `part_spans_batch` 0.2.2): regular expressions, the JSON index,
search, base64, hex and SHA-256 run natively by the host, so a Python plugin's loops stay
short. Batch-wide calls (`Pattern.find_in_batch`, `json_index_batch`) look at every record
of the running call in one host call: no record's bytes cross into Python for them.

```python
from sluice_sdk import text

EMAIL = text.Pattern([r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+"])   # once, at init

def mask_batch(batch):
    hits = EMAIL.find_in_batch(text.VALUE)     # flat [record, pattern, start, end, ...]
    for k in range(0, len(hits), 4):
        batch.splice(hits[k], [(hits[k + 2], hits[k + 3], b"***")])
```

Patterns are in the syntax of Rust's `regex` crate (linear time: no backreferences or
look-around). Positions are byte offsets. Run natively (`sluice_sdk.testing`), the same
calls are answered in Python: patterns by `re` (a `(?-u:...)` group becomes `(?a:...)`,
matching on the text as decoded UTF-8), the JSON index by a port of the host's.
"""

from __future__ import annotations

import re as _re

try:  # Inside a component: the host's `text` interface.
    from wit_world.imports import text as _host
except ImportError:  # Natively.
    _host = None

KEY, VALUE = 0, 1
"""Which part of a record a batch-wide call reads."""

OBJECT, ARRAY, KEY_TOKEN, STRING, SCALAR, INVALID = 0, 1, 2, 3, 4, 5
"""Kinds of JSON index tokens; `ESCAPED` is added to a key's or string's kind when it holds
escapes (its content is not its text)."""
ESCAPED = 16
MEMBER, ESCAPES = 64, 255
"""In `find_in_json_batch` answers: a member under a matching name is `MEMBER + kind`; a
JSON record with escapes is one `ESCAPES`."""

_batch = None
"""Natively: the (key, value) pairs of the running call, set by the SDK."""


def _set_batch(parts):
    global _batch
    _batch = parts


def _part(part):
    if _host is None:
        return part
    return _host.Part.KEY if part == KEY else _host.Part.VALUE


def _err(e):
    return ValueError(str(getattr(e, "value", e)))


class Pattern:
    """A set of regular expressions compiled once by the host: a match is the leftmost of
    any of them (the first source wins at the same start) and says which, by index."""

    __slots__ = ("_p", "_n")

    def __init__(self, sources):
        sources = [sources] if isinstance(sources, str) else list(sources)
        if _host is not None:
            try:
                self._p = _host.Pattern.compile(sources)
            except Exception as e:  # noqa: BLE001 - the host's message
                raise _err(e) from None
        else:
            self._p = _NativePattern(sources)
        self._n = len(sources)

    def is_match(self, haystack: bytes) -> bool:
        return self._p.is_match(haystack)

    def find_all(self, haystack: bytes) -> list[int]:
        """Every match, leftmost first, as flat `[index, start, end, ...]` triples."""
        return self._p.find_all(haystack)

    def find_in_batch(self, part: int = VALUE) -> list[int]:
        """Every match in `part` of every record of the running call, as flat
        `[record, index, start, end, ...]` quadruples, records in order."""
        if _host is not None:
            return self._p.find_in_batch(_part(part))
        out = []
        for r, kv in enumerate(_batch or ()):
            h = kv[part]
            if h is not None:
                f = self._p.find_all(h)
                for k in range(0, len(f), 3):
                    out += (r, f[k], f[k + 1], f[k + 2])
        return out

    def find_in_json_batch(self, part: int = VALUE, names: "Pattern | None" = None) -> list[int]:
        """`find_in_batch` aware of JSON (0.2.2): in a JSON object or array only string
        values are searched, each on its own, and the members whose name `names` matches
        come as `[record, MEMBER + kind, start, end]` (their value's span, not searched);
        a JSON record with escapes is one `[record, ESCAPES, 0, 0]` (parse it yourself);
        other records are searched whole."""
        if _host is not None:
            return self._p.find_in_json_batch(_part(part), None if names is None else names._p)
        out = []
        for r, kv in enumerate(_batch or ()):
            h = kv[part]
            if h is not None:
                _find_in_json(self._p, None if names is None else names._p, h, r, out)
        return out

    def replace_all(self, haystack: bytes, replacement: str) -> bytes:
        return self._p.replace_all(haystack, replacement)


def json_index_batch(part: int = VALUE) -> list[int]:
    """The JSON index of `part` of every record of the running call that holds a JSON
    object or array, as flat `[record, kind, start, end, ...]` quadruples (see
    `json_index`)."""
    if _host is not None:
        return _host.json_index_batch(_part(part))
    out = []
    for r, kv in enumerate(_batch or ()):
        d = kv[part]
        if d is not None and looks_like_json(d):
            _index(d, r, out)
    return out


def json_index(document: bytes) -> list[int]:
    """The tokens of a JSON object or array in document order, as flat `[kind, start, end,
    ...]` triples: objects and arrays span from their bracket to after the closing one,
    keys and strings their content between the quotes, scalars their text. Not JSON: one
    `INVALID` token where it stops being JSON."""
    if _host is not None:
        return _host.json_index(document)
    out = []
    _index(document, 0, out)
    return [x for k in range(0, len(out), 4) for x in out[k + 1 : k + 4]]


def part_spans_batch(part: int = VALUE):
    """Where `part` of each record of the running call lies in its records: flat `[start,
    end, ...]` (a null part `2**32 - 1`); the host's answer, None natively."""
    return list(_host.part_spans_batch(_part(part))) if _host is not None else None


def looks_like_json(b: bytes) -> bool:
    """Whether `b`'s first byte other than JSON whitespace is `{` or `[`."""
    s = b.lstrip(b" \t\r\n")
    return s[:1] in (b"{", b"[")


def find(haystack: bytes, needle: bytes, start: int = 0):
    if _host is not None:
        return _host.find(haystack, needle, start)
    i = haystack.find(needle, start)
    return None if i < 0 else i


def find_byte(haystack: bytes, byte_set: bytes, start: int = 0):
    if _host is not None:
        return _host.find_byte(haystack, byte_set, start)
    for i in range(start, len(haystack)):
        if haystack[i] in byte_set:
            return i
    return None


def json_get(document: bytes, pointer: str):
    """The element at an RFC 6901 pointer as compact JSON text, or None; ValueError when
    `document` is not JSON."""
    if _host is not None:
        try:
            return _host.json_get(document, pointer)
        except Exception as e:  # noqa: BLE001
            raise _err(e) from None
    import json

    from . import path

    v = json.loads(document)
    got = v if pointer == "" else path(v, pointer)
    return None if got is None else json.dumps(got, separators=(",", ":")).encode()


def base64_encode(data: bytes) -> str:
    if _host is not None:
        return _host.base64_encode(data)
    import base64  # natively only: a component asks the host

    return base64.b64encode(data).decode()


def base64_decode(s: str) -> bytes:
    if _host is not None:
        try:
            return _host.base64_decode(s)
        except Exception as e:  # noqa: BLE001
            raise _err(e) from None
    import base64

    return base64.b64decode(s, validate=True)


def hex_encode(data: bytes) -> str:
    return _host.hex_encode(data) if _host is not None else data.hex()


def hex_decode(s: str) -> bytes:
    if _host is not None:
        try:
            return _host.hex_decode(s)
        except Exception as e:  # noqa: BLE001
            raise _err(e) from None
    return bytes.fromhex(s)


def sha256(data: bytes) -> bytes:
    if _host is not None:
        return _host.sha256(data)
    import hashlib

    return hashlib.sha256(data).digest()


# --- natively: the same answers in Python ------------------------------------------------


class _NativePattern:
    def __init__(self, sources):
        if not 1 <= len(sources) <= 64:
            raise ValueError(f"a pattern set has 1 to 64 patterns, not {len(sources)}")
        alts = []
        for i, s in enumerate(sources):
            s = s.replace("(?-u:", "(?a:")
            flags = ""
            m = _re.match(r"\(\?([a-z]+)\)", s)
            if m:  # a leading flag group applies to this source only
                flags, s = m.group(1), s[m.end() :]
            alts.append(f"(?P<_s{i}>" + (f"(?{flags}:{s})" if flags else s) + ")")
        try:
            self.re = _re.compile("|".join(alts))
        except _re.error as e:
            raise ValueError(f"pattern does not compile: {e}") from None
        self.n = len(sources)

    def _matches(self, h: bytes):
        text = h.decode("utf-8", "surrogateescape")
        ascii_only = len(text) == len(h)
        for m in self.re.finditer(text):
            idx = next(i for i in range(self.n) if m.group(f"_s{i}") is not None)
            s, e = m.start(), m.end()
            if not ascii_only:
                s, e = len(text[:s].encode("utf-8", "surrogateescape")), len(
                    text[:e].encode("utf-8", "surrogateescape")
                )
            yield idx, s, e, m

    def is_match(self, h):
        return next(self._matches(h), None) is not None

    def find_all(self, h):
        out = []
        for idx, s, e, _ in self._matches(h):
            out += (idx, s, e)
        return out

    def replace_all(self, h, replacement):
        text = h.decode("utf-8", "surrogateescape")
        repl = _re.sub(r"\$\$|\$\{(\w+)\}|\$(\w+)", lambda m: "$" if m.group(0) == "$$" else "\\g<" + (m.group(1) or m.group(2)) + ">", replacement)
        return self.re.sub(repl, text).encode("utf-8", "surrogateescape")


def _find_in_json(p, names, b, r, out):
    tokens = []
    if looks_like_json(b):
        _index(b, 0, tokens)
    if not tokens or tokens[1] == INVALID:
        f = p.find_all(b)
        for k in range(0, len(f), 3):
            out += (r, f[k], f[k + 1], f[k + 2])
        return
    if max(tokens[1::4]) >= ESCAPED:
        out += (r, ESCAPES, 0, 0)
        return
    skip_until, member = 0, False
    for k in range(0, len(tokens), 4):
        kind, s, e = tokens[k + 1], tokens[k + 2], tokens[k + 3]
        if s < skip_until:
            continue
        named, member = member, False
        if kind == KEY_TOKEN:
            member = names is not None and names.is_match(b[s:e])
        elif named:
            out += (r, MEMBER + kind, s, e)
            if kind <= ARRAY:
                skip_until = e
        elif kind == STRING:
            f = p.find_all(b[s:e])
            for j in range(0, len(f), 3):
                out += (r, f[j], s + f[j + 1], s + f[j + 2])


_WS = b" \t\r\n"
_MAX_DEPTH = 128


class _Invalid(Exception):
    def __init__(self, at):
        self.at = at


def _skip_ws(b, i):
    n = len(b)
    while i < n and b[i] in _WS:
        i += 1
    return i


_RES = {}


def _pattern(name):
    """The native JSON index's expressions, compiled on first use (not at import: a
    component never needs them)."""
    got = _RES.get(name)
    if got is None:
        got = _RES[name] = _re.compile(
            {
                "run": rb'[^"\\\x00-\x1f]*',
                "scalar": rb"true|false|null|-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?",
            }[name]
        )
    return got


def _string(b, j):
    """(end of the string whose content starts at j, escaped?)"""
    escaped = False
    while True:
        k = _pattern("run").match(b, j).end()
        try:
            b[j:k].decode("utf-8")
        except UnicodeDecodeError as e:
            raise _Invalid(j + e.start) from None
        if k >= len(b):
            raise _Invalid(len(b))
        c = b[k]
        if c == 0x22:
            return k, escaped
        if c != 0x5C:
            raise _Invalid(k)
        escaped = True
        nxt = b[k + 1 : k + 2]
        if nxt and nxt in b'"\\/bfnrt':
            j = k + 2
        elif nxt == b"u" and _re.fullmatch(rb"[0-9A-Fa-f]{4}", b[k + 2 : k + 6]):
            j = k + 6
        else:
            raise _Invalid(k)


def _index(b, record, out):
    mark = len(out)
    try:
        _index_json(b, record, out)
    except _Invalid as e:
        del out[mark:]
        out += (record, INVALID, e.at, e.at)


def _index_json(b, record, out):
    opened = []  # (where its quadruple is, is it an object)
    nxt = "value"
    i = _skip_ws(b, 0)
    n = len(b)
    while True:
        if i >= n:
            raise _Invalid(i)
        c = b[i]
        if nxt in ("comma", "value_or_close", "key_or_close") and c in b"}]":
            if not opened:
                raise _Invalid(i)
            at, obj = opened.pop()
            if (c == 0x7D) != obj or (nxt == "value_or_close" and obj):
                raise _Invalid(i)
            i += 1
            out[at + 3] = i
            if not opened:
                if _skip_ws(b, i) != n:
                    raise _Invalid(i)
                return
            i = _skip_ws(b, i)
            nxt = "comma"
        elif nxt == "comma":
            if c != 0x2C:
                raise _Invalid(i)
            i = _skip_ws(b, i + 1)
            nxt = "key" if opened[-1][1] else "value"
        elif nxt in ("key", "key_or_close"):
            if c != 0x22:
                raise _Invalid(i)
            end, esc = _string(b, i + 1)
            out += (record, KEY_TOKEN + (ESCAPED if esc else 0), i + 1, end)
            i = _skip_ws(b, end + 1)
            if b[i : i + 1] != b":":
                raise _Invalid(i)
            i = _skip_ws(b, i + 1)
            nxt = "value"
        else:
            if c in b"{[":
                if len(opened) == _MAX_DEPTH:
                    raise _Invalid(i)
                obj = c == 0x7B
                opened.append((len(out), obj))
                out += (record, OBJECT if obj else ARRAY, i, 0)
                i = _skip_ws(b, i + 1)
                nxt = "key_or_close" if obj else "value_or_close"
                continue
            if c == 0x22:
                end, esc = _string(b, i + 1)
                out += (record, STRING + (ESCAPED if esc else 0), i + 1, end)
                i = end + 1
            else:
                m = _pattern("scalar").match(b, i)
                if m is None or m.end() == i:
                    raise _Invalid(i)
                out += (record, SCALAR, i, m.end())
                i = m.end()
            if not opened:
                raise _Invalid(i)
            i = _skip_ws(b, i)
            nxt = "comma"
