"""Masks secrets in plain-text and JSON values — the Rust `mask` example in Python, passing
the same `plugins/mask/cases.json`.

Detectors (config `detectors`, comma-separated; default all): `pairs` (`Password: x`,
`token=abc` for the secret names), `json` (JSON fields whose name contains a secret name,
whatever their value; other JSON strings get the text detectors), `email` (the local part),
`card` (13–19 digits passing the Luhn check; all but the last 4 digits). Config `mask_char`
(default `*`), `mask_length` (default 8; `preserve` keeps the length), `fields` (secret
names, comma-separated).

It runs on the host's passes (`sluice_sdk.text`): one host call per batch finds, in
every record, the members under secret names and the text detectors' matches inside
JSON strings (or in the whole value when it is not JSON); what stays in Python is the
policy — which part of a match to mask, the Luhn check — and each masked record leaves as
a splice (only the masks cross back; a record with nothing to mask is passed untouched).
JSON with escapes goes through the slower walk below (`Masker.mask_value`), which is
also what `mask` (record by record) runs.
"""

import json
import re

import sluice_sdk
from sluice_sdk import Error, Outcome, text

DEFAULT_FIELDS = (
    "password,passwd,pwd,secret,token,api_key,apikey,access_key,private_key,authorization,credential"
)
EMAIL = r"(?a:\b[A-Za-z0-9._%+-]+)@(?a:(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,}\b)"
CARD = r"(?a:\b[0-9](?:[ -]?[0-9]){12,18}\b)"


def normalize(name):
    return "".join(c for c in name if c not in "_- ").lower()


def luhn(s):
    digits = [int(c) for c in s if c.isdigit()]
    if not 13 <= len(digits) <= 19:
        return False
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2 == 1:
            d = d * 2 - 9 if d * 2 > 9 else d * 2
        total += d
    return total % 10 == 0


def masked_card(card, mask_char):
    """A card number with all but its last four digits masked (separators kept)."""
    total = sum(c.isdigit() for c in card)
    out, seen = [], 0
    for c in card:
        if c.isdigit():
            seen += 1
            if seen <= total - 4:
                out.append(mask_char)
                continue
        out.append(c)
    return "".join(out)


class Masker:
    def __init__(self, get):
        mc = get("mask_char")
        if mc is not None and len(mc) != 1:
            raise Error(f"mask_char must be one character, not {mc!r}")
        self.mask_char = mc or "*"
        ml = get("mask_length")
        if ml is None:
            self.mask_length = 8
        elif ml == "preserve":
            self.mask_length = None
        elif ml.isdigit() and 1 <= int(ml) <= 64:
            self.mask_length = int(ml)
        else:
            raise Error(f'mask_length must be 1..=64 or "preserve", not {ml!r}')
        raw = [n.strip() for n in (get("fields") or DEFAULT_FIELDS).split(",") if n.strip()]
        self.names = [normalize(n) for n in raw]
        detectors = [d.strip() for d in (get("detectors") or "pairs,json,email,card").split(",")]
        for d in detectors:
            if d not in ("pairs", "json", "email", "card"):
                raise Error(f"unknown detector {d!r} (pairs, json, email, card)")
        self.json = "json" in detectors
        alts = []
        if "pairs" in detectors and raw:
            names = "|".join(
                r"[_\- ]?".join(re.escape(p) for p in re.split(r"[_\- ]", n)) for n in raw
            )
            alts.append(rf"""(?P<pairs>(?i:\b(?:{names})\w*\s*[:=]\s*"?))(?P<pv>[^\s,;&"']+)""")
        if "email" in detectors:
            alts.append(EMAIL.replace(r"(?a:\b[A-Za-z0-9._%+-]+)", r"(?P<local>(?a:\b[A-Za-z0-9._%+-]+))", 1))
        if "card" in detectors:
            alts.append(f"(?P<card>{CARD})")
        self.text = re.compile("|".join(alts)) if alts else None
        self.seen = {}
        # The same detectors for the host, in the syntax of Rust's `regex` (as the Rust
        # plugin has them), and what each of its patterns finds.
        sources, self.kinds = [], []
        if "pairs" in detectors and raw:
            names = "|".join(r"[_\- ]?".join(_escape(p) for p in re.split(r"[_\- ]", n)) for n in raw)
            sources.append(rf"""(?i)(?:^|[^\w])(?:{names})\w*\s*[:=]\s*"?[^\s,;&"']+""")
            self.kinds.append("pairs")
        if "email" in detectors:
            sources.append(HOST_EMAIL)
            self.kinds.append("email")
        if "card" in detectors:
            sources.append(HOST_CARD)
            self.kinds.append("card")
        self.host = text.Pattern(sources) if sources else None
        # The batch pass needs a pattern even with no text detector: one that never matches.
        self.scan = self.host or text.Pattern([r"\b\B"])
        # Secret field names as the host matches them: a name's letters with `_`, `-` or
        # spaces between them, any case (what `normalize` then `in` means).
        self.names_re = None
        if self.json and self.names:
            alts = "|".join(r"[_\- ]*".join(_escape(c) for c in n) for n in self.names)
            self.names_re = text.Pattern([f"(?i){alts}"])
        self.fixed = (
            None if self.mask_length is None else (self.mask_char * self.mask_length).encode()
        )
        self.quoted = None if self.fixed is None else b'"' + self.fixed + b'"'

    def mask(self, n):
        return self.mask_char * (self.mask_length if self.mask_length is not None else n)

    def secret_name(self, name):
        s = self.seen.get(name)
        if s is None:
            n = normalize(name)
            s = self.seen[name] = any(x in n for x in self.names)
        return s

    def _replace(self, m):
        groups = m.re.groupindex
        if "pairs" in groups and m.group("pairs") is not None:
            return m.group("pairs") + self.mask(len(m.group("pv")))
        if "local" in groups and m.group("local") is not None:
            local = m.group("local")
            return self.mask(len(local)) + m.group(0)[len(local):]
        found = m.group(0)
        return masked_card(found, self.mask_char) if luhn(found) else found

    def mask_text(self, text):
        if self.text is None:
            return text
        return self.text.sub(self._replace, text)

    def mask_json(self, text):
        """Masks JSON text token by token; None when it is not JSON."""
        try:
            json.loads(text)
        except ValueError:
            return None
        out, i, n = [], 0, len(text)
        # Stack of containers: True for objects. `expect_key`: the next string is a key.
        stack, expect_key, secret_next, skip_depth = [], False, False, None
        while i < n:
            c = text[i]
            if c in " \t\r\n,:":
                if c == "," and stack and stack[-1]:
                    expect_key = True
                out.append(c)
                i += 1
                continue
            if c in "{[":
                if secret_next and skip_depth is None:
                    end = _container_end(text, i)
                    out.append('"' + self.mask(end - i) + '"')
                    i, secret_next = end, False
                    continue
                stack.append(c == "{")
                expect_key = c == "{"
                out.append(c)
                i += 1
                continue
            if c in "}]":
                stack.pop()
                expect_key = False
                out.append(c)
                i += 1
                continue
            if c == '"':
                m = _STRING.match(text, i)
                raw = m.group(0)
                i = m.end()
                if expect_key:
                    expect_key = False
                    secret_next = self.json and self.secret_name(json.loads(raw))
                    out.append(raw)
                    continue
                if secret_next:
                    out.append('"' + self.mask(len(json.loads(raw))) + '"')
                    secret_next = False
                    continue
                value = json.loads(raw)
                masked = self.mask_text(value)
                out.append(raw if masked == value else json.dumps(masked, ensure_ascii=False))
                continue
            m = _SCALAR.match(text, i)
            raw = m.group(0)
            i = m.end()
            if secret_next and raw != "null":
                out.append('"' + self.mask(len(raw)) + '"')
            else:
                out.append(raw)
            secret_next = False
        return "".join(out)

    def mask_value(self, value):
        text = value.decode("utf-8")
        if text.lstrip(" \t\r\n")[:1] in ("{", "["):
            masked = self.mask_json(text)
            if masked is not None:
                return masked
        return self.mask_text(text)


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)
_SCALAR = re.compile(r"-?[0-9][0-9.eE+-]*|true|false|null")


def _container_end(text, i):
    """The end of the object or array starting at `i` (valid JSON)."""
    depth = 0
    while True:
        c = text[i]
        if c == '"':
            i = _STRING.match(text, i).end()
            continue
        if c in "{[":
            depth += 1
        elif c in "}]":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1


HOST_EMAIL = r"(?-u:\b)[A-Za-z0-9._%+-]+@(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,}(?-u:\b)"
HOST_CARD = r"(?-u:\b)[0-9](?:[ -]?[0-9]){12,18}(?-u:\b)"


def _escape(s):
    return "".join("\\" + c if c in "\\.+*?()|[]{}^$#&-~" else c for c in s)


def _mask_bytes(m, n):
    return m.fixed or (m.mask_char * n).encode()


def text_span(m, b, kind, start, end, spans):
    """Appends the span that masks what the text detector `kind` found at `b[start:end]`."""
    found = b[start:end]
    if kind == "email":
        at = found.find(b"@")
        spans.append((start, start + at, _mask_bytes(m, at)))
    elif kind == "pairs":
        cut = [i for i in (found.find(b":", 1), found.find(b"=", 1)) if i > 0]
        if not cut:
            return
        try:
            value = found[min(cut) + 1 :].decode("utf-8").lstrip()
        except UnicodeDecodeError:
            return
        if value.startswith('"'):
            value = value[1:]
        n = len(value.encode("utf-8"))
        spans.append((end - n, end, _mask_bytes(m, len(value))))
    else:
        card = found.decode("ascii")
        if luhn(card):
            spans.append((start, end, masked_card(card, m.mask_char).encode()))


def mask_batch(m, batch):
    """One batch: one host pass finds, in every record, the members under secret names
    and the text detectors' matches inside JSON strings (or in the whole value when it is
    not JSON); Python then only decides what each of those becomes."""
    q = m.scan.find_in_json_batch(text.VALUE, m.names_re)
    kinds = m.kinds
    value = batch.value
    n = len(q)
    k = 0
    while k < n:
        r = q[k]
        b = value(r)
        spans = []
        text_checked = False
        while k < n and q[k] == r:
            code, s, e = q[k + 1], q[k + 2], q[k + 3]
            k += 4
            if code < text.MEMBER:
                if not text_checked:
                    try:
                        b.decode("utf-8")  # text that is not UTF-8 is left alone
                    except UnicodeDecodeError:
                        spans = None
                        break
                    text_checked = True
                text_span(m, b, kinds[code], s, e, spans)
            elif code == text.ESCAPES:  # JSON with escapes: the slower walk decides
                masked = m.mask_value(b).encode("utf-8")
                if masked != b:
                    spans.append((0, len(b), masked))
            elif code == text.MEMBER + text.STRING:
                spans.append((s, e, m.fixed or _mask_bytes(m, len(b[s:e].decode("utf-8")))))
            elif code != text.MEMBER + text.SCALAR or b[s:e] != b"null":
                spans.append((s, e, m.quoted or ('"' + m.mask_char * (e - s) + '"').encode()))
        while k < n and q[k] == r:  # the rest of a record left alone
            k += 4
        if spans:
            batch.splice(r, spans)


def setup():
    m = Masker(sluice_sdk.config)
    return m


def mask(m, record):
    value = record.value
    if value is None:
        return Outcome.keep()
    try:
        masked = m.mask_value(value)
    except UnicodeDecodeError:
        return Outcome.keep()
    if masked.encode("utf-8") == value:
        return Outcome.keep()
    return Outcome.keep_with_value(masked)


WitWorld = sluice_sdk.transform_batch(mask_batch, init=setup)
