"""Running a comparison's jobs (here, in workers or on Ray), resuming one, and its MLflow parent run."""
