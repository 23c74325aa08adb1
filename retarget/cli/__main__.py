from retarget.cli.app import main

main()
