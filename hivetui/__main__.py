import sys

from hivetui.cli import main

sys.exit(main())
