"""`python -m oceand.ctl` runs `oceanctl`."""

from oceand.ctl.main import main

main()
