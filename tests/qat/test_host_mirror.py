"""Host mirrors of scalar buffers (hwquant/qat/host_mirror.py): the buffer stays the truth; the
host copy follows every write made through the mirror, and is dropped on a state-dict load."""

from __future__ import annotations

import torch

from hwquant.qat.host_mirror import HostMirrored


class Counter(HostMirrored):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("step", torch.zeros((), dtype=torch.int64))
        self.register_buffer("ready", torch.zeros((), dtype=torch.bool))


def test_set_host_and_advance_write_the_buffer_and_its_copy():
    c = Counter()
    c.set_host("step", 5)
    assert c.advance("step") == 6 and int(c.step) == 6 and c.host("step") == 6


def test_a_direct_buffer_write_is_not_seen_until_a_load_drops_the_copy():
    c = Counter()
    assert c.host("step") == 0
    c.step.fill_(9)  # bypasses the mirror: the copy is stale by design
    assert c.host("step") == 0
    c.load_state_dict(c.state_dict())
    assert c.host("step") == 9


def test_a_one_way_flag_is_reread_until_it_is_set_then_kept():
    c = Counter()
    assert c.host_flag("ready") is False
    c.ready.fill_(True)  # a direct write: seen, because a False flag is read again
    assert c.host_flag("ready") is True
    c.ready.fill_(False)  # one way: once True, the copy is kept
    assert c.host_flag("ready") is True
