from spyderd.ctl.cli import main

raise SystemExit(main())
