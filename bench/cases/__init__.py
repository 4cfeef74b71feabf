"""The cases of the performance suite, one module each (numbered as in the issue)."""
