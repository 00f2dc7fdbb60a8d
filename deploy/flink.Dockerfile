# Flink 2.2.1 (Java 17) with PyFlink, the project's Python dependencies and the Kafka
# connector: the image of the JobManager and TaskManagers in docker-compose.yml.
FROM flink:2.2.1-java17
USER root
RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-venv python3-pip \
    && rm -rf /var/lib/apt/lists/*
COPY requirements.lock /opt/iotflink/requirements.lock
RUN python3 -m venv /opt/iotflink/venv \
    && /opt/iotflink/venv/bin/pip install --no-cache-dir -r /opt/iotflink/requirements.lock
# the same connector version deps/pom.xml pins (setup copies it into .deps/flink)
COPY .deps/flink/flink-sql-connector-kafka-5.0.0-2.2.jar /opt/flink/lib/
# the project's json-dlq table format (jvm/, built by setup into .deps/flink)
COPY .deps/flink/iotflink-flink-formats.jar /opt/flink/lib/
# flink-conf/config.yaml is the cluster's configuration; the entrypoint merges FLINK_PROPERTIES
# (docker-compose.yml: the container bind addresses) into it. Its taskmanager.host (localhost,
# for the local stack) is removed, as the official image removes it from its own config.yaml:
# a TaskManager then advertises the address it reaches the JobManager from, so any number of
# TaskManager containers register.
COPY flink-conf/config.yaml /opt/flink/conf/config.yaml
RUN sed -i '/^taskmanager\.host:/d' /opt/flink/conf/config.yaml
COPY jobs /opt/iotflink/jobs
COPY udfs /opt/iotflink/udfs
COPY iotflink /opt/iotflink/iotflink
COPY bridge /opt/iotflink/bridge
COPY sql /opt/iotflink/sql
# the cluster defaults a job client copies into every job (jobs/common.py cluster_defaults)
COPY flink-conf /opt/iotflink/flink-conf
# the project installed into the venv (pyproject.toml): the TaskManagers' Python workers
# import its packages from there (a submission also ships them with `flink run -pyfs`)
COPY pyproject.toml requirements.txt requirements-dev.txt README.md /opt/iotflink/
RUN /opt/iotflink/venv/bin/pip install --no-cache-dir --no-deps -e /opt/iotflink \
    && chown -R flink:flink /opt/iotflink
USER flink
