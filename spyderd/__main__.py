from spyderd.daemon.wiring import main

raise SystemExit(main())
