"""What compare's fork server imports before it forks the workers (see pool.py): torch, torch._dynamo
(which building any torch.optim optimizer imports: most of a second) and the training code.

Frozen for the garbage collector (see process/torch_import.py), as Python's gc documentation advises
before fork(): collections in the workers leave these objects alone.
"""

import atexit
import os
import signal

# A Ctrl-C while the server imports (a terminal's reaches it too) abandons the command: leave at once
# and quietly, not with the import's traceback.
signal.signal(signal.SIGINT, lambda signum, frame: os._exit(130))

from optcli.process.torch_import import collections_paused  # noqa: E402

with collections_paused():
    import torch._dynamo  # noqa: F401

    import optcli.compare.running.jobs
    import optcli.train.run  # noqa: F401

signal.signal(signal.SIGINT, signal.default_int_handler)  # (the workers forked later set their own)
# The workers forked later start with SIGTERM ignored, until they can take it (job_runner.serve);
# a stop sent meanwhile reaches them through the pool's stop event.
signal.signal(signal.SIGTERM, signal.SIG_IGN)
# The server leaves once the command and its workers have: at once, without tearing down the modules
# above (a tenth of a second, which a caller reading the command's output through a pipe waits for:
# the server holds its ends). It has nothing to flush or close; the workers it forks never run this,
# as multiprocessing's children leave by os._exit after their job.
atexit.register(os._exit, 0)
