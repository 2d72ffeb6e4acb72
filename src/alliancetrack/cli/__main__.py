"""``python -m alliancetrack.cli``: run the command line."""

import sys

from alliancetrack.cli.main import main

sys.exit(main())
