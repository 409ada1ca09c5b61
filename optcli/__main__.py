"""`python -m optcli` is the `optcli` command."""

from optcli.cli import main

main()
