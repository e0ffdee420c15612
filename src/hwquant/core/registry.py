"""A registry: a table of named entries that the modules defining them fill on import.

The op registry (:mod:`hwquant.ir.ops`), the scheme registry (:mod:`hwquant.qat.registry`) and
the unit emitters (:mod:`hwquant.rtl.unit`) are each one :class:`Registry`: an entry is
registered once under its name, the names come back in registration order (or sorted), and an
unknown name is refused with an error that lists the registered ones.

>>> colours = Registry("colour")
>>> colours.add("red", 1), colours.add("green", 2)
(1, 2)
>>> colours.names(), colours.get("green")
(('red', 'green'), 2)
>>> try:
...     colours.get("blue")
... except ConfigError as error:
...     print(error)
unknown colour 'blue'. Fix: use one of the registered colours: red, green.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from hwquant.core.errors import ConfigError, HwquantError

T = TypeVar("T")


class Registry(Generic[T]):
    """Entries of one ``kind`` by name.

    ``fix`` is the end of the unknown-name error, formatted with ``kind`` and ``names`` (the
    registered names, comma-separated); ``error`` is its class. ``sort``: :meth:`names` sorted
    instead of in registration order.
    """

    def __init__(
        self,
        kind: str,
        *,
        error: type[HwquantError] = ConfigError,
        fix: str = "use one of the registered {kind}s: {names}.",
        sort: bool = False,
    ) -> None:
        self.kind = kind
        self.error = error
        self.fix = fix
        self.sort = sort
        self._entries: dict[str, T] = {}

    def add(self, name: str, entry: T, check: Callable[[T], None] | None = None) -> T:
        """Register ``entry`` under ``name`` (once) and return it; ``check(entry)`` runs before
        it is stored, once the name is known to be free (it raises to refuse the entry)."""
        if name in self._entries:
            raise ConfigError(f"{self.kind} {name!r} is registered twice")
        if check is not None:
            check(entry)
        self._entries[name] = entry
        return entry

    def names(self) -> tuple[str, ...]:
        """The registered names, in registration order (sorted with ``sort``)."""
        return tuple(sorted(self._entries) if self.sort else self._entries)

    def entries(self) -> tuple[T, ...]:
        """The registered entries, in registration order."""
        return tuple(self._entries.values())

    def get(self, name: str) -> T:
        """The entry registered under ``name``.

        Raises:
            HwquantError: of the class ``error``; no entry of that name is registered (the
                message lists those that are).
        """
        try:
            return self._entries[name]
        except KeyError:
            fix = self.fix.format(kind=self.kind, names=", ".join(self.names()))
            raise self.error(f"unknown {self.kind} {name!r}. Fix: {fix}") from None
