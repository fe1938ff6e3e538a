"""Value classes that are cheap to build: the decorator for fleet's hot-path records.

Job: declare the small immutable records that fleet builds for every call and every
task (envelopes, deliveries, state changes, hook inputs). Not to be confused with
`fleet._values`, which stores large argument and result values by content hash.

Contract: to the type checker a `@value_class` class is a frozen, slotted dataclass:
assigning a field is an error under `mypy --strict`, and `dataclasses.replace` makes
changed copies. At run time it is a slotted dataclass with the equality and hash a frozen one
has, whose `__init__` assigns its fields directly. A frozen dataclass's `__init__` goes
through `object.__setattr__` once per field: 0.9 us against 0.2 us for eight fields,
and a call builds a dozen of these between its producer and its worker. The one thing
given up is the run-time guard against assignment, which the type checker keeps.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeVar, dataclass_transform

T = TypeVar("T")


@dataclass_transform(frozen_default=True, field_specifiers=(field,))
def value_class(cls: type[T]) -> type[T]:
    return dataclass(slots=True, unsafe_hash=True)(cls)
