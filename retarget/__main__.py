"""``python -m retarget``: the same as the ``retarget`` command."""

from retarget.cli.app import main

main()
