"""Using a trained run: its scored weights, rebuilt from the run's own config and files, to predict,
to evaluate and to export. Nothing here trains, or writes into a run directory but its `export/`."""
