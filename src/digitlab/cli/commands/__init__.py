"""One module per `digitlab` command: `register(subparsers)` adds its parser and returns it,
`run(args) -> int` calls the library and prints. Imports of torch and the workflows stay inside
`run`, so that `digitlab --help` starts without them."""
