"""The integer intermediate representation: IntModel, its nodes and its weight encodings."""
