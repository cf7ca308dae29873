from watchdog.cli.main import main

raise SystemExit(main())
