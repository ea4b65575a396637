from spyderd.daemon import main

raise SystemExit(main())
