"""`python -m koopscope` is the `koopscope` command."""

from .cli.main import app

app(prog_name="koopscope")
