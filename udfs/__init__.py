"""Python UDFs of the iot-flink jobs (shipped to the TaskManagers' Python workers with ``-pyfs``).

Only edge functions live here; the hot path of every job stays in JVM operators.
"""
