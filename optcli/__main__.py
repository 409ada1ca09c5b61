"""`python -m optcli` is the `optcli` command."""

from optcli.command import main

main()
