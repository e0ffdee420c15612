"""The quantization schemes, one package each: its quantizer, weight encoding, engine kernel, cost
and RTL unit."""
