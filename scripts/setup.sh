#!/usr/bin/env bash
# Idempotent setup of everything iot-flink needs on a fresh Debian machine:
#   1. Debian packages from deps/apt.txt (Mosquitto with mosquitto_passwd, openssl for the MQTT
#      TLS CA, kcat, libmosquitto-dev, GoogleTest, ...)
#   2. a Python venv in .venv with requirements.lock (pins from requirements.txt and
#      requirements-dev.txt), and the project itself installed editable (`pip install -e .`:
#      the packages iotflink, jobs, udfs, bridge importable, the `iotflink` command in .venv/bin)
#   3. Maven artifacts from deps/pom.xml into .deps/ (Kafka broker, Flink Kafka connector), and
#      the project's own JVM module jvm/ (the json-dlq table format) built into .deps/flink/
#   4. the connector jar copied into the venv's Flink distribution (pyflink/lib), so the
#      MiniCluster, the standalone cluster and sql-client.sh all load it, and
#      the SQL gateway jar into pyflink/opt (sql-client.sh needs it; the wheel lacks it)
# A second run skips every step that is already in place. Prints one line per step.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV=${IOTFLINK_VENV:-$ROOT/.venv}
DEPS=${IOTFLINK_DEPS_DIR:-$ROOT/.deps}
PY=${PYTHON:-python3}

step() { printf '[setup] %s\n' "$*"; }

# 1. Debian packages
missing=()
while read -r pkg; do
  [[ -z "$pkg" || "$pkg" == \#* ]] && continue
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done < deps/apt.txt
if ((${#missing[@]})); then
  step "apt-get install ${missing[*]}"
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # the Debian mosquitto package starts a system broker on :1883; the project runs its own
  if command -v systemctl >/dev/null && systemctl is-active --quiet mosquitto 2>/dev/null; then
    $SUDO systemctl disable --now mosquitto >/dev/null 2>&1 || true
  fi
else
  step "Debian packages present"
fi

# 2. Python venv
stamp="$VENV/.requirements.lock.sha"
want=$(sha256sum requirements.lock | cut -d' ' -f1)
if [[ -x "$VENV/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  step "venv up to date ($VENV)"
else
  step "creating venv $VENV (pip install -r requirements.lock; first run takes a few minutes)"
  [[ -x "$VENV/bin/python" ]] || "$PY" -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check -r requirements.lock
  echo "$want" > "$stamp"
fi
# 2b. the project, editable (pyproject.toml); re-installed when pyproject.toml changed
pstamp="$VENV/.pyproject.toml.sha"
pwant=$(cat pyproject.toml requirements.txt requirements-dev.txt | sha256sum | cut -d' ' -f1)
if [[ -x "$VENV/bin/iotflink" && -f "$pstamp" && "$(cat "$pstamp")" == "$pwant" ]] \
   && (cd / && "$VENV/bin/python" -c 'import iotflink, jobs, udfs, bridge') 2>/dev/null; then
  step "project installed (editable)"
else
  step "pip install -e . (the project's packages and the iotflink command)"
  "$VENV/bin/pip" install -q --disable-pip-version-check --no-deps -e .
  echo "$pwant" > "$pstamp"
fi

# 3. Maven artifacts
pomsha=$(sha256sum deps/pom.xml | cut -d' ' -f1)
if [[ -f "$DEPS/.pom.sha" && "$(cat "$DEPS/.pom.sha")" == "$pomsha" ]]; then
  step "Maven artifacts present ($DEPS)"
else
  step "fetching Maven artifacts into $DEPS (Kafka broker, Flink Kafka connector)"
  rm -rf "$DEPS/kafka" "$DEPS/flink" "$DEPS/flink-opt"
  mvn -q -B -f deps/pom.xml -DdepsDir="$DEPS" package
  echo "$pomsha" > "$DEPS/.pom.sha"
fi

# 3b. the project's JVM module (rebuilt when a file under jvm/ changed)
jvmsha=$(find jvm -type f -not -path 'jvm/target/*' -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)
if [[ -f "$DEPS/flink/iotflink-flink-formats.jar" && -f "$DEPS/.jvm.sha" && "$(cat "$DEPS/.jvm.sha")" == "$jvmsha" ]]; then
  step "jvm module up to date ($DEPS/flink/iotflink-flink-formats.jar)"
else
  step "building jvm/ (json-dlq table format) into $DEPS/flink"
  mvn -q -B -f jvm/pom.xml -DdepsDir="$DEPS" package
  echo "$jvmsha" > "$DEPS/.jvm.sha"
fi

# 4. connector jar into the Flink distribution shipped with PyFlink
FLINK_HOME=$("$VENV/bin/python" -c 'import os, pyflink; print(os.path.dirname(os.path.abspath(pyflink.__file__)))')
for jar in "$DEPS"/flink/*.jar; do
  dest="$FLINK_HOME/lib/$(basename "$jar")"
  if [[ ! -s "$dest" ]] || ! cmp -s "$jar" "$dest"; then
    cp "$jar" "$dest"
    step "installed $(basename "$jar") into $FLINK_HOME/lib"
  fi
done
for jar in "$DEPS"/flink-opt/*.jar; do
  dest="$FLINK_HOME/opt/$(basename "$jar")"
  if [[ ! -s "$dest" ]] || ! cmp -s "$jar" "$dest"; then
    cp "$jar" "$dest"
    step "installed $(basename "$jar") into $FLINK_HOME/opt"
  fi
done
step "done"
