"""What compare's fork server imports before it forks the workers (see workers.py): torch, torch._dynamo
(which building any torch.optim optimizer imports: most of a second) and the training code.

Then gc.freeze(), as Python's gc documentation advises before fork(): collections in the workers
leave these objects alone, and the server's own exit (which a caller reading its output waits for)
does not walk them either.
"""

import gc

import torch._dynamo  # noqa: F401

import optcli.compare.jobs
import optcli.train.run  # noqa: F401

gc.freeze()
