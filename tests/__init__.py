"""The test suite. Its shared helpers are in tests/support: pytest rewrites their asserts, as it
does those of test modules and conftest.py, so that a failing helper explains itself. (Registered
here, before anything imports them.)"""

import pytest

pytest.register_assert_rewrite("tests.support")
