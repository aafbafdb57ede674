"""``python -m warmrec`` runs the CLI."""

from warmrec.cli.main import main

main()
