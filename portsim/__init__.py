"""Port traffic simulator: a seeded customs office (ports, enterprises, declarations with hidden
ground truth, credit events), its scanners and its inspection stations.

- :class:`portsim.traffic.PortOffice`: the office and its traffic (pure, no I/O);
- :class:`portsim.gateway.PortGateway`: publishes live traffic to Kafka and plays the scanners;
- :class:`portsim.station.InspectionStation`: the instruction queue of a port, reporting results;
- :func:`portsim.history.write_history`: labelled parquet history for training and backtests.
"""

from portsim.traffic import GroundTruth, PortOffice

__all__ = ["GroundTruth", "PortOffice"]
