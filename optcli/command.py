"""The `optcli` command's entry point (and `python -m optcli`'s). Its first instruction takes the
stop signals, before the command's own modules are imported (a few tenths of a second): see
process/interrupts.py."""

from optcli.process.interrupts import leave_on_stop_signals


def main() -> None:
    leave_on_stop_signals()
    from optcli.cli import main as run_command

    run_command()
