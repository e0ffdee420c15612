"""Benchmarks that ship as commands: ``hwquant bench reproduce`` (the CIFAR-10 table of the four
methods, fake-quant against engine, FP32 against QAT step time)."""
