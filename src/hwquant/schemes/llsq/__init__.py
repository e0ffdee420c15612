"""LLSQ: learned linear symmetric quantization; its fixed-point multiply-accumulate unit."""
