"""The supported operations, one module each."""
