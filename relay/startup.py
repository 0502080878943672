"""Why the relay refuses to start.

Every start-up check raises `StartupError`: the settings serving needs, the compiled extensions
(`relay.runtime`), the aiohttp and aiokafka self-checks (`relay.edge_check`,
`relay.kafka_client`). The command line turns it into one log line and exit code 1.
"""

from __future__ import annotations


class StartupError(Exception):
    """The relay cannot run as configured or installed; the message says why and what to do."""
