"""The ``liftstream`` command line: run the platform locally, apply experiments, read results.

``main.app`` is the console script; the heavier modules (the platform supervisor, the
demo) are imported only by the commands that need them.
"""
