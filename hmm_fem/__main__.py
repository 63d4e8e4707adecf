"""``python -m hmm_fem`` runs the ``hmm-fem`` command."""

import sys

from hmm_fem.cli import main

if __name__ == "__main__":
    sys.exit(main())
