"""MQTT-to-Kafka bridge: :mod:`bridge.contract` (validation, timestamps, dead letters) and
:mod:`bridge.service` (the bridge process) and :mod:`bridge.cli` (``iotflink bridge``, also
``python -m bridge``)."""
