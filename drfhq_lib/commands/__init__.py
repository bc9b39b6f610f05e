"""The command line, one module per ``drfhq`` command: each exposes ``add_cli(subparsers)``
(argparse wiring) and a thin ``run(args)`` that checks the flags and calls the job functions of
the package; the algorithms themselves never parse arguments or print.

Exit codes (every command, :mod:`drfhq_lib.commands.options`): 0 success; 1 finished, but some
items failed (listed in the manifest); 2 usage or expected error, one line
``drfhq CMD: error: ...`` naming the file or flag and the way out; 130 interrupted (rerun the
same command to resume).
"""
