"""The Python mask against the shared case table, natively (`python3 -m unittest`, or pytest)."""

import pathlib
import sys
import unittest

HERE = pathlib.Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parents[1])]

import app  # noqa: E402
from sluice_sdk.testing import Harness  # noqa: E402

CASES = HERE.parents[2] / "plugins" / "mask" / "cases.json"


class MaskTest(unittest.TestCase):
    def test_case_table(self):
        Harness(app.mask_batch, init=app.setup, batch=True).run_suites(CASES.read_text())

    def test_case_table_record_by_record(self):
        Harness(app.mask, init=app.setup).run_suites(CASES.read_text())

    def test_bad_config_fails_init(self):
        with self.assertRaisesRegex(Exception, "mask_char"):
            Harness(app.mask_batch, init=app.setup, batch=True).config("mask_char", "ab").run_values([])


class BatchAnswersTest(unittest.TestCase):
    """The `Batch` answers the mask builds on, and how they combine."""

    def test_keep_splice_emit_reject_drop(self):
        from sluice_sdk import OutRecord

        def fn(b):
            b.splice(3, [(0, 1, b"X")])
            b.keep(1)
            b.keep(1)  # fan-out
            b.reject(2, "bad")
            b.keep(2)  # a reject is final
            b.drop(4)
            b.emit(0, OutRecord("new"))
            b.splice(5, [(1, 2, "Y")])
            b.drop(5)
            b.keep(5)  # after a drop, answers count again

        got = Harness(fn, batch=True).run_values([f"a{i}" for i in range(7)])
        self.assertEqual(
            [(o.kind, o.reason or o.values()) for o in got],
            [("emit", ["new"]), ("emit", ["a1", "a1"]), ("reject", "bad"), ("emit", ["X3"]),
             ("drop", []), ("emit", ["a5"]), ("emit", ["a6"])],
        )

    def test_a_splice_that_does_not_fit_is_refused_and_an_exception_isolates(self):
        def fn(b):
            for i in range(len(b)):
                if b.value(i) == b"boom":
                    raise ValueError("boom")
                b.splice(i, [(0, 1, b"*")])

        got = Harness(fn, batch=True).run_values(["ab", "boom", "cd"])
        self.assertEqual([o.kind for o in got], ["emit", "reject", "emit"])
        self.assertIn("ValueError: boom", got[1].reason)
        with self.assertRaisesRegex(AssertionError, "does not fit"):
            Harness(lambda b: b.splice(0, [(1, 9, b"")]), batch=True).run_values(["ab"])


if __name__ == "__main__":
    unittest.main()
