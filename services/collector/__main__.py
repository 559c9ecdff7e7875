"""``python -m services.collector``: run the HTTP collector."""

import sys

from services.collector.main import main

sys.exit(main())
