"""The opt-in durable spool (`spool.enabled`, docs/design.md §9): a write-ahead log of the
relay's own that answers 200 for records Kafka has not acknowledged yet, once they are fsynced
on the local disk, and delivers them to Kafka later, in order.

- `publisher`: the handler's publisher with the spool on; when a request goes direct and when
  to the spool, and back;
- `store`: the segment log as the event loop keeps account of it (segments, bytes, requests
  held, what Kafka acknowledged);
- `writer`: the thread that writes and fsyncs, one fsync per group of requests;
- `drainer`: the spool to Kafka, oldest first, at least once;
- `segments`, `frames`: the files and the frame format, reading back, recovery;
- `lock`: one relay per directory.
"""
