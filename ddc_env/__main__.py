"""``python -m ddc_env``: the ``ddc`` command."""
import sys

from .cli import main

sys.exit(main())
