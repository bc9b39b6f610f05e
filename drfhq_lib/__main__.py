import sys

from drfhq_lib.cli import main

sys.exit(main())
