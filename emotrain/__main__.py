"""`python -m emotrain` (and `accelerate launch -m emotrain fit ...`) runs the command line."""

from emotrain.cli import app

app()
