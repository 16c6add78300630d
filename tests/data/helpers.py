"""Assertions shared by the data tests."""

from __future__ import annotations

import pytest

from madbench.errors import DataError


def raises_data_error(fn, *args, file: str, expect: str, **kwargs) -> str:
    """Call ``fn``; it must raise a one-line DataError that names ``file`` and says ``expect``."""
    with pytest.raises(DataError) as info:
        fn(*args, **kwargs)
    msg = str(info.value)
    assert "\n" not in msg, msg
    assert file in msg, f"{file!r} not named in: {msg}"
    assert "expected" in msg and expect in msg, f"{expect!r} not in: {msg}"
    return msg


def raises_disagreement(fn, *args, files: tuple[str, ...], values: tuple, **kwargs) -> str:
    """``fn`` must refuse metadata that disagrees with a file: a one-line DataError that names
    every file in ``files`` and both (all) disagreeing ``values``, and says what was expected."""
    with pytest.raises(DataError) as info:
        fn(*args, **kwargs)
    msg = str(info.value)
    assert "\n" not in msg, msg
    for f in files:
        assert str(f) in msg, f"file {f!r} not named in: {msg}"
    for v in values:
        assert str(v) in msg, f"value {v!r} not in: {msg}"
    assert "expected" in msg, msg
    return msg
