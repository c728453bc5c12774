import pytest

from encore.testing.asserts import assert_python_ok, run_python


def test_returns_status_and_output():
    code, out, err = assert_python_ok(
        "-c", "import sys; print('hi'); sys.stderr.write('x')"
    )
    assert (code, out.strip(), err) == (0, b"hi", b"x")


def test_isolated_from_python_variables_without_env_vars():
    _, out, _ = assert_python_ok(
        "-c", "import sys; print(sys.flags.ignore_environment)"
    )
    assert out.strip() == b"1"


def test_env_vars_reach_the_child():
    code = "import os, sys; print(os.environ['ENCORE_X'], sys.flags.ignore_environment)"
    _, out, _ = assert_python_ok("-c", code, ENCORE_X="42")
    assert out.split() == [b"42", b"0"]


def test_failure_shows_status_and_output():
    with pytest.raises(AssertionError) as info:
        assert_python_ok("-c", "import sys; print('out'); sys.exit('went wrong')")
    message = str(info.value)
    assert "status 1" in message
    assert "went wrong" in message
    assert "out" in message


def test_time_limit():
    with pytest.raises(AssertionError, match="did not finish within 0.5 s"):
        assert_python_ok("-c", "import time; time.sleep(60)", __timeout=0.5)


def test_run_python_does_not_assert():
    code, _, err = run_python("-c", "raise SystemExit(3)")
    assert code == 3 and err == b""
