"""`python -m charm_ros.env -- CMD`: the documented wrapper command; the wrapper is charm_ros.tools.env."""
import sys

from charm_ros.tools.env import main

if __name__ == "__main__":
    sys.exit(main())
