"""A Python plugin that misbehaves on records whose value contains `POISON`, in the way
config `mode` names: `loop` (never returns), `memhog` (allocates until stopped), `raise`
(an exception), `exit` (calls sys.exit), `network` (opens a socket), `state` (uses keyed state,
though built without it). Other records pass.
Test fixture, not an example."""

import socket
import sys

import sluice_sdk
from sluice_sdk import Outcome, state


def setup():
    return sluice_sdk.config("mode") or "identity"


def misbehave(mode, record):
    if b"POISON" not in (record.value or b""):
        return Outcome.keep()
    if mode == "loop":
        n = 0
        while True:
            n += 1
    if mode == "memhog":
        hoard = []
        while True:
            hoard.append(bytearray(1 << 20))
    if mode == "raise":
        raise ValueError(f"poison record {record.value_str()}")
    if mode == "exit":
        sys.exit(3)
    if mode == "network":
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.connect(("127.0.0.1", 9))
    if mode == "state":
        state.put(b"k", b"v")
    return Outcome.keep()


WitWorld = sluice_sdk.transform(misbehave, init=setup)
