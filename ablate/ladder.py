"""`python -m ablate.ladder`: see ablate/sweep/ladder.py."""

from ablate.sweep.ladder import main

if __name__ == "__main__":
    main()
