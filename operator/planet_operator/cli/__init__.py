"""The ``planet`` command line."""
