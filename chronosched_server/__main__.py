from chronosched_server.cli import main

raise SystemExit(main())
