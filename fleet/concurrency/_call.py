"""One call as `ConcurrencyExtension` sees it: its arguments, its keys, how it differs.

Job: decode a call's arguments once, and only when a key needs them; give its key under
each `Mode` (a limit's, the result cache's, a rate budget's); and word the refusal of a
call whose non-key arguments differ from those of the invocation that owns its key.

Contract:
- `Call.key` decodes nothing for `Mode.TASK` (or KEYS without names); otherwise the
  arguments are decoded at most once per `Call` (codec, large values and signature from
  its extension) and the key is `fleet.concurrency._key.digest` of the selected ones.
- `refuse_diff` always raises `ExtensionError` naming the differing non-key arguments
  (all of the call's non-key arguments when the owner's cannot be loaded).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from fleet.codec import Codec
from fleet.concurrency._key import bound_arguments, digest
from fleet.concurrency._options import Mode, Policy
from fleet.errors import ExtensionError

if TYPE_CHECKING:
    from fleet.concurrency._extension import ConcurrencyExtension

_MISSING = object()


class Call:
    """One call's arguments, decoded once and only if a key needs them."""

    def __init__(self, ext: ConcurrencyExtension, task: str, data: bytes | None, codec: str):
        self.ext, self.task, self.data, self.codec_name = ext, task, data, codec
        self._named: dict[str, object] | None = None

    @property
    def codec(self) -> Codec:
        return self.ext.codec(self.codec_name)

    def named(self) -> dict[str, object]:
        if self._named is None:
            data = self.data if self.data is not None else b""
            self._named = bound_arguments(
                self.codec, self.ext.resolve(data), self.ext.signature(self.task)
            )
        return self._named

    def key(self, mode: Mode, names: Sequence[str] = (), exclude: Sequence[str] = ()) -> str:
        if mode is Mode.TASK or (mode is Mode.KEYS and not names):
            return f"{self.task}:*"
        named = self.named()
        if mode is Mode.ARGUMENTS:
            names = [n for n in named if n not in exclude]
        return digest(self.task, self.codec, named, names)


def refuse_diff(call: Call, owner: str, policy: Policy, data: bytes | None) -> None:
    """Raise naming the non-key arguments in which `call` differs from `owner`'s
    (all of them when `owner`'s arguments cannot be loaded)."""
    keys = set(policy.key_arguments)
    mine = call.named()
    if data is None:
        differ = sorted(set(mine) - keys)
    else:
        theirs = Call(call.ext, call.task, data, call.codec_name).named()
        differ = sorted(
            n
            for n in (set(mine) | set(theirs)) - keys
            if mine.get(n, _MISSING) != theirs.get(n, _MISSING)
        )
    raise ExtensionError(
        f"task {call.task!r}: invocation {owner!r} has the same key arguments "
        f"{sorted(keys)!r} but different {differ!r} (on_diff_non_key_args='raise')"
    )
