"""``python -m tppeft`` = the ``tppeft`` command."""

import sys

from tppeft.cli import main

sys.exit(main())
