"""``python -m hmm_fem`` runs the ``hmm-fem`` command."""

import sys

from hmm_fem.cli import main

sys.exit(main())
