#!/bin/sh
# Entrypoint of every green-pipeline-study image: a guard, then the real command, unchanged.
#
# Models are never baked into the images nor downloaded by them: they are mounted at run time
# (compose binds ./artifacts to /workspace/artifacts). When GPS_REQUIRE names paths (separated
# by ':', relative to the working directory) that do not exist, say in one line what is missing
# and how to make it, instead of letting tritonserver/vLLM/the server fail somewhere deeper.
# Everything else is the command itself (`exec "$@"`): no container-only code path.
set -eu

if [ -n "${GPS_REQUIRE:-}" ]; then
  old_ifs="$IFS"
  IFS=':'
  for required in $GPS_REQUIRE; do
    if [ -n "$required" ] && [ ! -e "$required" ]; then
      echo "green-pipeline-study: '${required}' is missing in the container (cwd $(pwd))." \
        "Models are mounted from the host's artifacts/, never downloaded: build it first," \
        "e.g. 'make train VARIANT=${VARIANT:-v0}' then 'make export VARIANT=${VARIANT:-v0}'" \
        "(add RUNTIME=docker to do it in containers)." >&2
      exit 66
    fi
  done
  IFS="$old_ifs"
fi

if [ "$#" -eq 0 ]; then
  echo "green-pipeline-study: no command given to the container" >&2
  exit 64
fi
exec "$@"
