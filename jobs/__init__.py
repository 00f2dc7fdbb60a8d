"""PyFlink jobs of iot-flink.

Each job module exposes ``build(...)``, which assembles its pipeline from injected sources and
sinks (so tests run it on a local MiniCluster), and ``main()``, which wires Kafka from the
settings in :mod:`iotflink.settings` and is what ``flink run -py jobs/<job>.py`` executes.
Shared helpers (environment creation, checkpointing, connector jar check) are in
:mod:`jobs.common`.
"""
