"""``python -m services.control``: run the control API and its projection."""

import sys

from services.control.main import main

sys.exit(main())
