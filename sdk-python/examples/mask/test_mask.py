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


if __name__ == "__main__":
    unittest.main()
