"""``python -m services.dashboard``: run the web dashboard."""

import sys

from services.dashboard.main import main

sys.exit(main())
