"""``python -m liftstream_cli``: the same as the ``liftstream`` console script."""

from liftstream_cli.main import app

app(prog_name="liftstream")
