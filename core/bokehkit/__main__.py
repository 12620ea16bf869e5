import sys

from .commands.render import main

sys.exit(main())
