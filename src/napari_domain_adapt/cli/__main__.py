"""``python -m napari_domain_adapt.cli``: the ``napari-domain-adapt`` command."""

import sys

from . import main

sys.exit(main())
