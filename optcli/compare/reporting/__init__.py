"""What a comparison leaves on disk: results and summaries, curves.png, sensitivity.png, a suite's report, `optcli plot`."""
