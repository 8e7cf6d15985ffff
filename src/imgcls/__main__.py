"""``python -m imgcls``: the command line, as the ``imgcls`` script (what ``torchrun -m imgcls train`` runs)."""

import sys

from imgcls.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
