"""Quantization-aware training: quantized layers, the quantizer protocol, the recipe, prepare, lower
and verify."""
