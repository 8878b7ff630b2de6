"""One module per DVC stage: `run(cfg, layout)` does the work, `main(argv)` is the CLI DVC calls.

No orchestration here: Prefect lives in `flows/`, MLflow behind `integrations/`.

Importing the package caps the CPU kernel level (`runtime.cpu_kernels`, see vistune/runtime.py) before
a stage module imports torch: the one thing done at import time, because torch reads it only then.
"""

import sys

from stages.cli import pin_kernels_from_argv

pin_kernels_from_argv(sys.argv[1:])
