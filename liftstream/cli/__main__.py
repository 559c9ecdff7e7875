"""``python -m liftstream.cli``: the same as the ``liftstream`` console script."""

from liftstream.cli.main import app

app(prog_name="liftstream")
