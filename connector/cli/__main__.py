"""`python -m connector.cli`: the same as `ftconnect`."""

import sys

from connector.cli.main import main

sys.exit(main())
