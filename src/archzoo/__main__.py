"""``python -m archzoo`` runs the ``archzoo`` command."""

import sys

from .cli import main

sys.exit(main())
