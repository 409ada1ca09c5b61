"""What a comparison or suite will run: its plan read from the compare file, its arms, seeds, targets and tuning budgets."""
