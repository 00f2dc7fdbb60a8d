"""iot-flink: shared Python package (settings, errors, local stack, CLI, replayer)."""
