"""The decision archive: every declaration, instruction and inspection result, kept for years.

``riskctl archive`` runs :class:`archive.sink.ArchiveSink` beside the workers in its own consumer
group: it reads the pipeline's topics and appends their records to Delta Lake tables
(:mod:`archive.tables`) through delta-rs, exactly once. Each Delta commit carries the Kafka
position of every partition it covers as a Delta application transaction (app id
``{topic}:{partition}``, version = the next offset to read), so the table itself says where to
resume; Kafka's committed group offsets are only a hint for lag tools. :mod:`archive.queries`
answers questions from the tables (``riskctl explain``, ``riskctl report``, label export).

Layering: ``archive`` sits beside ``streams`` (neither imports the other) and below ``audit``,
which reads it; it imports only ``common``, ``schemas`` and ``clients``.
"""
