"""`python -m gradacc` is the same CLI as the `gradacc` console script."""
from .cli import main

main()
