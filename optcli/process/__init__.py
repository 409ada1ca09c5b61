"""Process plumbing that every stage above uses: signals that ask a command to stop, and importing
torch without paying for its garbage. It knows nothing of runs, configs or comparisons."""
