"""The ``imgcls`` command line: a thin layer that parses arguments and calls library functions."""
