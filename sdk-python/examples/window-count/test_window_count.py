"""The Python window-count against the shared case table and a stream, natively."""

import json
import pathlib
import sys
import unittest

HERE = pathlib.Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parents[1])]

import app  # noqa: E402
from sluice_sdk.testing import Harness, TestRecord  # noqa: E402

CASES = HERE.parents[2] / "plugins" / "window-count" / "cases.json"


def at(key, t):
    return TestRecord(value=b"x", key=key.encode(), timestamp=t)


class WindowCountTest(unittest.TestCase):
    def harness(self):
        return Harness(app.count, init=app.Counter, on_timer=app.close)

    def test_case_table(self):
        self.harness().run_suites(CASES.read_text())

    def test_out_of_order_events_count_per_window_and_closed_windows_leave_nothing(self):
        s = self.harness().config("window_ms", "1000").allowed_lateness(500).stream()
        self.assertEqual(s.push([at("a", 1100), at("b", 1900), at("a", 1400)]).fired, [])
        self.assertEqual(s.push([at("a", 2300), at("a", 1850)]).fired, [])
        got = [json.loads(f.values()[0]) for f in s.push([at("b", 2600)]).fired]
        self.assertEqual(
            got,
            [
                {"key": "a", "window_start": 1000, "window_end": 2000, "count": 3},
                {"key": "b", "window_start": 1000, "window_end": 2000, "count": 1},
            ],
        )
        self.assertEqual([o.kind for o in s.push([at("a", 1999)]).outcomes], ["late"])
        fired = s.advance(10_000)
        self.assertEqual(len(fired), 2)
        self.assertEqual(fired[0].outcome.emitted[0].timestamp, 3000)
        self.assertEqual((s.state(), s.timers()), ({}, []))

    def test_bad_window_size_fails_init(self):
        with self.assertRaisesRegex(Exception, "window_ms"):
            self.harness().config("window_ms", "0").run([])


if __name__ == "__main__":
    unittest.main()
