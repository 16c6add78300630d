"""`python -m madbench ...` is the same as the `madbench` command."""
from madbench.cli import main

main()
