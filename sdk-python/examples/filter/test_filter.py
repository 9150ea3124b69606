"""The Python filter against the shared case table, natively (`python3 -m unittest`, or pytest)."""

import pathlib
import sys
import unittest

HERE = pathlib.Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parents[1])]

import app  # noqa: E402
from sluice_sdk.testing import Harness  # noqa: E402

CASES = HERE.parents[2] / "plugins" / "filter" / "cases.json"


class FilterTest(unittest.TestCase):
    def test_case_table(self):
        Harness(app.filter_record, init=app.setup).run_suites(CASES.read_text())

    def test_missing_field_config_fails_init(self):
        with self.assertRaisesRegex(Exception, "field"):
            Harness(app.filter_record, init=app.setup).run_values([])


if __name__ == "__main__":
    unittest.main()
