import sys

from fer_core.cli import main

if __name__ == "__main__":
    sys.exit(main())
