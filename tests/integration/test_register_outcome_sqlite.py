"""Registration whose outcome is unknown, on the embedded SQLite store (see the unit test)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleet import Fleet, RegistrationUnknownError, StateError, Status
from fleet._records import UNKNOWN_NOTE
from tests.unit.test_register_outcome import InsertThenFail, add


@pytest.mark.parametrize("down", [False, True])
def test_sqlite_records_written_anyway_never_run_unknown(tmp_path: Path, down: bool) -> None:
    url = f"sqlite:///{tmp_path / 'fleet.db'}"
    app = Fleet(broker_url=url, state_url=url)
    runtime = app.runtime()
    real = runtime.state
    store = InsertThenFail(real, down=down)
    runtime.state = store  # type: ignore[assignment]  # a wrapper around the real store
    task = app.task(add)
    expected = RegistrationUnknownError if down else StateError
    with pytest.raises(expected) as info:
        task(1, 2)
    (record,) = real.get(store.registered)
    if down:
        assert record.status is Status.PENDING
        assert info.value.invocation_ids == (record.id,)  # type: ignore[attr-defined]
    else:
        assert not isinstance(info.value, RegistrationUnknownError)
        assert record.status is Status.FAILED
        assert record.history[-1].note == UNKNOWN_NOTE
    app.close()
