"""`python -m gradacc` is the same CLI as the `gradacc` console script."""
from gradacc.cli import main

main()
