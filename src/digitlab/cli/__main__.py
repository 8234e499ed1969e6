"""`python -m digitlab.cli`, as before the CLI became a package: the `digitlab` command."""

from digitlab.cli.main import main

raise SystemExit(main())
