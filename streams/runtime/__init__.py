"""Every use of Faust beyond its public API, behind one small adapter. Each Faust internal used
here is pinned by tests/unit/streams/runtime/test_faust_contract.py.

- ``app``: ``faust_app`` -- the worker's Faust app from settings, running the consumer below.
- ``checkpoint``: ``Checkpoint`` -- the at-least-once protocol: outputs produced, deliveries
  tracked, the offset commit held back until they are on the broker.
- ``consumer``: ``in_order_consumer`` -- the consumer class: fetch wait, input partitions read and
  committed strictly in order, the commit guard.
- ``batching``: ``take_batches`` -- micro-batches from a stream, acknowledged once handled.
- ``producer``: ``send_records`` -- records as whole batches on Faust's aiokafka producer.
- ``tables``: ``contents``, ``write``, ``changelog_topic`` -- a table's local store, directly.
- ``status``: ``ready``, ``active_partitions``, ``input_lag`` -- the worker's readiness,
  assignment and consumer lag.
"""
