#!/usr/bin/env bash
# Installs what the build and the tests need, skipping what is present. Safe to run again.
#   clang, libclang-dev   RocksDB's bindings (bindgen) and C++ build
#   protobuf-compiler     protoc for the gRPC/protobuf code generation
#   prometheus            Debian's Prometheus 2.42, the reference system in the tests
#   victoria-metrics      Debian's VictoriaMetrics 1.79, the other one (`collabstream bench`)
#   openssl               certificates for the SDK's TLS test
#   postgresql-client     psql, a PostgreSQL client that isn't ours, for SQL over the wire
#                         protocol
#   grpcio, grpcio-tools  (PyPI) the Python client example
#   confluent-kafka, fastavro  (PyPI) another producer than ours, compressed and Avro, in the
#                         Kafka tests
#   moto[server]          (PyPI) an S3-compatible server: the Kafka broker's storage when it
#                         must survive a restart, and the cold tier's object store
#   duckdb, pyarrow       (PyPI) engines that aren't ours, reading the cold tier's Parquet files
#   pg8000                (PyPI) a PostgreSQL driver using the extended protocol (tests/tests/sql_catalog.rs)
#   pyyaml, check-jsonschema, kubernetes-validate  (PyPI) reading and validating deploy/
#   chromium              Debian's Chromium, headless, for the web UI's browser test
#   make, curl            the Makefile's workflow (tests/tests/makefile.rs runs it)
#   nodejs, npm           (when missing) to install ui/'s packages from the npm registry:
#                         uPlot, the chart library the binary embeds, and playwright-core,
#                         which drives Chromium in the browser test
# The Kafka broker of the Kafka tests (tansu, from crates.io) is scripts/install-tansu.sh: its
# build is long, so scripts/test.sh runs it in the background.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v clang >/dev/null 2>&1 || missing+=(clang)
dpkg -s libclang-dev >/dev/null 2>&1 || missing+=(libclang-dev)
command -v protoc >/dev/null 2>&1 || missing+=(protobuf-compiler)
command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
command -v victoria-metrics >/dev/null 2>&1 || missing+=(victoria-metrics)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v psql >/dev/null 2>&1 || missing+=(postgresql-client)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v make >/dev/null 2>&1 || missing+=(make)
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)

if ((${#missing[@]})); then
  echo "install-deps: installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Debian's packages may start services; the tests start their own on free ports.
  for service in prometheus victoria-metrics; do
    if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$service" 2>/dev/null; then
      $sudo systemctl stop "$service" || true
    fi
  done
fi

# grpcio for the Python client example (sdk/examples/python), which a test runs.
if ! python3 -c "import grpc, grpc_tools" >/dev/null 2>&1; then
  echo "install-deps: installing grpcio grpcio-tools"
  python3 -m pip install --quiet --disable-pip-version-check grpcio grpcio-tools
fi

# The other Python pieces of the tests, each checked by importing it.
pypi=()
python3 -c "import confluent_kafka" >/dev/null 2>&1 || pypi+=(confluent-kafka)
python3 -c "import fastavro" >/dev/null 2>&1 || pypi+=(fastavro)
command -v moto_server >/dev/null 2>&1 || pypi+=("moto[server]")
python3 -c "import duckdb" >/dev/null 2>&1 || pypi+=(duckdb)
python3 -c "import pyarrow" >/dev/null 2>&1 || pypi+=(pyarrow)
python3 -c "import yaml" >/dev/null 2>&1 || pypi+=(pyyaml)
# A PostgreSQL driver that speaks only the extended protocol (psql speaks the simple one).
python3 -c "import pg8000" >/dev/null 2>&1 || pypi+=(pg8000)
# The deployment files' validators (tests/tests/deploy_files.rs): the Compose specification
# and Kubernetes' schemas travel inside the packages.
command -v check-jsonschema >/dev/null 2>&1 || pypi+=(check-jsonschema)
command -v kubernetes-validate >/dev/null 2>&1 || pypi+=(kubernetes-validate)
if ((${#pypi[@]})); then
  echo "install-deps: installing ${pypi[*]}"
  python3 -m pip install --quiet --disable-pip-version-check "${pypi[@]}"
fi

# The web UI's packages (ui/package-lock.json), which the build embeds: again only when the
# lock file is newer than the install, so that an unchanged UI does not rebuild the server.
if [ ! -f ui/node_modules/.package-lock.json ] || [ ui/package-lock.json -nt ui/node_modules/.package-lock.json ]; then
  echo "install-deps: installing the web UI's packages (npm ci --prefix ui)"
  npm ci --prefix ui --no-audit --no-fund --loglevel=error
fi

for component in rustfmt clippy; do
  if ! rustup component list --installed 2>/dev/null | grep -q "^$component"; then
    rustup component add "$component"
  fi
done
echo "install-deps: ok"
