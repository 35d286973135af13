"""`python -m i2v_client.cli`: the `i2v` command without its console script."""

import sys

from i2v_client.cli import main

sys.exit(main())
