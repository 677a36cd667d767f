"""``python -m neuroposter``."""

from neuroposter.cli import main

raise SystemExit(main())
