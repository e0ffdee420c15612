"""Host mirrors of a module's scalar buffers: step counters, freeze steps and one-way flags.

A quantizer or layer that reads a scalar buffer on every forward (``if step < freeze_at``)
would wait for the device each time it converts the buffer to a Python number. The buffer stays
the truth (it is saved, loaded, broadcast and moved with the module); :class:`HostMirrored`
keeps a host copy beside it: read from the device once, then updated together with the buffer
by :meth:`~HostMirrored.set_host` and :meth:`~HostMirrored.advance`. Loading a state dict drops
the copies, so they are read again. A one-way flag (False until set, e.g. "initialized") is read
with :meth:`~HostMirrored.host_flag`, which keeps re-reading while the flag is False, so that a
flag set by a direct write to the buffer is seen.

>>> import torch
>>> class Counter(HostMirrored):
...     def __init__(self):
...         super().__init__()
...         self.register_buffer("step", torch.zeros((), dtype=torch.int64))
>>> c = Counter()
>>> c.advance("step"), c.advance("step"), c.host("step"), int(c.step)
(1, 2, 2, 2)
>>> c.load_state_dict({"step": torch.tensor(7)})
<All keys matched successfully>
>>> c.host("step")
7
"""

from __future__ import annotations

from typing import Any

from torch import nn


class HostMirrored(nn.Module):
    """An ``nn.Module`` whose scalar buffers are mirrored on the host (module docstring)."""

    def _mirror(self) -> dict[str, int]:
        return self.__dict__.setdefault("_host_values", {})

    def host(self, name: str) -> int:
        """The value of buffer ``name``, read from the device at most once."""
        mirror = self._mirror()
        if name not in mirror:
            mirror[name] = int(getattr(self, name))
        return mirror[name]

    def host_flag(self, name: str) -> bool:
        """The one-way flag ``name``: read from the device until it is True, then kept."""
        mirror = self._mirror()
        if not mirror.get(name):
            mirror[name] = int(bool(getattr(self, name)))
        return bool(mirror[name])

    def set_host(self, name: str, value: int) -> None:
        """Write ``value`` to buffer ``name`` and to its host copy."""
        getattr(self, name).fill_(value)
        self._mirror()[name] = int(value)

    def advance(self, name: str) -> int:
        """Add one to the counter ``name`` (on the device, without waiting) and return it."""
        value = self.host(name) + 1
        getattr(self, name).add_(1)
        self._mirror()[name] = value
        return value

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self._mirror().clear()
