"""`python -m digitlab` is the same as the `digitlab` command."""

from digitlab.cli import main

raise SystemExit(main())
