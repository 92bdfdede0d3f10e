from __future__ import annotations

import sys

from chatroom.cli.main import main

sys.exit(main())
