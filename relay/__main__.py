"""`python -m relay` is `whatsapp-relay`."""

from relay.cli import main

raise SystemExit(main())
