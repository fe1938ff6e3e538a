"""The concurrency key of a call: which calls a limit treats as the same.

Job: from a task name and its encoded call (`fleet.codec.encode_call`), compute the
key a limit, the result cache or a rate budget is kept under.

Contract:
- TASK: one key per task. ARGUMENTS: one per argument values; with the signature known,
  arguments are bound to parameter names and defaults applied first, so `f(1)`,
  `f(a=1)` and `f()` with `a=1` by default share a key. KEYS: one per values of the
  named arguments (a key argument not passed and without default counts as absent,
  which is a value of its own).
- Keys are `"<task>:<digest>"` with the digest of `fleet.codec.call_key` over the
  selected (name, value) pairs encoded by the task's codec, sorted by name; equal values
  give equal keys in every process. Values are compared as encoded: dicts that differ
  only in insertion order get different keys.
- Undecodable data raises `SerializationError` (the codec's own).
"""

from __future__ import annotations

import inspect
from collections.abc import Collection, Sequence

from fleet.codec import Codec, call_key, decode_call
from fleet.concurrency._options import Mode

_ABSENT = "<absent>"


def bound_arguments(
    codec: Codec, data: bytes, signature: inspect.Signature | None
) -> dict[str, object]:
    """The call's arguments by name (positional ones named `#0`, `#1`, ... when the
    signature is unknown or they do not bind)."""
    args, kwargs = decode_call(codec, data)
    if signature is not None:
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError:
            pass  # the worker reports the bad call; key it by what was sent
        else:
            bound.apply_defaults()
            return dict(bound.arguments)
    named: dict[str, object] = {f"#{i}": value for i, value in enumerate(args)}
    named.update(kwargs)
    return named


def digest(task: str, codec: Codec, named: dict[str, object], names: Sequence[str]) -> str:
    """The key of the values of `names` among `named` (sorted by name)."""
    pairs = [[n, named.get(n, _ABSENT)] for n in sorted(set(names))]
    return f"{task}:{call_key(task, codec.encode(pairs))}"


def concurrency_key(
    task: str,
    data: bytes,
    codec: Codec,
    mode: Mode,
    key_arguments: Sequence[str] = (),
    signature: inspect.Signature | None = None,
    exclude: Collection[str] = (),
) -> str:
    """The key of one call under `mode` (see the module docstring).

    Args:
        task: the task name.
        data: the encoded call ([args, kwargs]).
        codec: the codec that encoded it.
        mode: TASK, ARGUMENTS or KEYS (DISABLED raises ValueError).
        key_arguments: KEYS: the arguments keyed on.
        signature: the task function's signature, when known.
        exclude: ARGUMENTS: names left out (the cache's `disable_cache_args`).
    """
    if mode is Mode.TASK:
        return f"{task}:*"
    if mode is Mode.DISABLED:
        raise ValueError("a DISABLED limit has no key")
    named = bound_arguments(codec, data, signature)
    if mode is Mode.KEYS:
        return digest(task, codec, named, key_arguments)
    return digest(task, codec, named, [n for n in named if n not in exclude])
