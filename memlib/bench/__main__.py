from memlib.bench import main

raise SystemExit(main())
