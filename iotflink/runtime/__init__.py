"""Running and operating the system: the local stack (Kafka, Mosquitto, Flink, bridge), job
control over ``flink run`` and the Flink REST API, backpressure reports, broker counters, MQTT
credentials, and the ``rules`` commands."""
