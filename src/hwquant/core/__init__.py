"""The ground floor: errors, integer maths, atomic writes, file formats and provenance; imports
nothing else of hwquant."""
