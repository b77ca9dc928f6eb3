"""`python -m recover ...` == the `recover` console script."""
from .cli import entry

entry()
