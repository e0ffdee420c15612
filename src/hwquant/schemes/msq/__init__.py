"""Mix and Match (MSQ): rows of sum-of-powers-of-two and fixed-point weights; shift-add kernel and
unit."""
