"""``python -m neuronscope`` (also what ``torchrun -m neuronscope mine ...`` runs)."""

import sys

from .cli import main

sys.exit(main())
