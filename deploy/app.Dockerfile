# The project's Python side (bridge, replayer, CLI) for docker-compose.yml.
FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends openjdk-17-jre-headless \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/iotflink
COPY requirements.lock .
RUN pip install --no-cache-dir -r requirements.lock
COPY . .
# the project itself (pyproject.toml): its packages importable, the `iotflink` command
RUN pip install --no-cache-dir --no-deps -e .
