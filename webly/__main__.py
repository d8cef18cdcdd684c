"""``python -m webly`` runs the command line."""

from webly.cli import main

main()
