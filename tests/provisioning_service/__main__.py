"""Entry point: ``python3 -m tests.provisioning_service``."""

from __future__ import annotations

import sys

from tests.provisioning_service.cli import main

sys.exit(main())
