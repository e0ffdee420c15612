"""Non-uniform codebook weights: quantizer, codebook engine kernel and lookup-MAC unit."""
