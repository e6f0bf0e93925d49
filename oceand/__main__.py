import sys

from oceand.cli import main

sys.exit(main())
