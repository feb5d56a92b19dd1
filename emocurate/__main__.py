"""`python -m emocurate` runs the CLI."""

from emocurate.cli import app

app()
