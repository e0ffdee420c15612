"""Round trips through the field's deployment tools (hls4ml, FINN), run by ``make interop``."""
