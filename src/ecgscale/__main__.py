"""``python -m ecgscale`` runs the command line."""

from ecgscale.cli import main

main()
