"""``python -m services.results``: run the loader and the results API."""

import sys

from services.results.main import main

sys.exit(main())
