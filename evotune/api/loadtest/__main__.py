import sys

from evotune.api.loadtest.run import main

sys.exit(main())
