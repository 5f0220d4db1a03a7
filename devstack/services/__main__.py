"""``python -m devstack.services up|status|down [service ...]``."""

import sys

from devstack.services.cli import main

sys.exit(main())
