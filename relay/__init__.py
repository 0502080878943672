"""whatsapp-relay: WhatsApp Business webhooks in, raw payloads out on Kafka."""

__version__ = "0.1.0"
