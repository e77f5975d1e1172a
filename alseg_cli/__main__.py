"""`python -m alseg_cli` runs the CLI (the same as the `alseg` script)."""
from .cli.main import main

if __name__ == "__main__":
    main()
