"""``python -m tlsdetect`` runs the command line."""

from .cli import main

main()
