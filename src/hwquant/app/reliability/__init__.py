"""Reliability tooling: faults injected on purpose and fuzzed inputs (``make reliability``).

* :mod:`hwquant.app.reliability.killpoint`: runs ``hwquant train`` and stops it at a named point
  (inside a step, inside a checkpoint write) so that a SIGKILL lands exactly there;
* :mod:`hwquant.app.reliability.faults`: kill-and-resume trials, failed checkpoint writes and
  damaged checkpoint and IntModel files, each checked against what must survive;
* :mod:`hwquant.app.reliability.fuzz`: oracles for the config loader, the IntModel loader and the
  quantizers, and the hypothesis strategies that feed them (needs the ``test`` extra).

See ``docs/reliability.md`` for what each check asserts.
"""
