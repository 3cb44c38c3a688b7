from desktop_image_operator.cli import main

raise SystemExit(main())
