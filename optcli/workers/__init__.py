"""A pool of worker processes that run jobs and stream their messages back (generic: it knows nothing of
comparisons). pool.py: the pool, started from a fork server that imports preload.py; job_runner.py:
each worker's side; dispatch.py: the order jobs are handed out in (longest first)."""
