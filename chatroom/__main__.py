from __future__ import annotations

import sys

from chatroom.cli import main

sys.exit(main())
