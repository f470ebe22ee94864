"""``python -m tlsdetect`` runs the command line."""

from tlsdetect.cli import main

main()
