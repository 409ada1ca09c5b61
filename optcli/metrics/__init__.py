"""What an evaluation measures: the table of metrics (names, columns, directions, words) and the
exact accumulation of their values over a whole validation or test split."""
