"""``python -m dmlp_plugin``: the ``dmlp`` command line."""

import sys

from .cli import main

sys.exit(main())
