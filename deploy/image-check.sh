#!/usr/bin/env bash
# Runs deploy/Dockerfile's install and start commands on this machine, without Docker:
# copies what the Dockerfile copies into a temporary directory, makes a venv there,
# installs headrace with the Dockerfile's `pip install` arguments, starts the Dockerfile's
# CMD (on 127.0.0.1 and a free port instead of 0.0.0.0:8080), checks /health and /ready,
# then stops it with SIGTERM as `docker stop` does and expects a clean exit.
#
#   deploy/image-check.sh            # the full install: dependencies from the package index
#   deploy/image-check.sh --lean     # pip install --no-deps --no-build-isolation: headrace
#                                    # itself is built and installed, its dependencies (and
#                                    # hatchling) are those of the Python running this script
#
# PYTHON (default: python3) makes the venv; in --lean mode it must have headrace's
# dependencies installed. Exit status 0 when the image would start and answer.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
dockerfile="$here/Dockerfile"
python="${PYTHON:-python3}"
if [[ "$python" == */* ]]; then  # absolute: the script changes directory
    python="$(cd "$(dirname "$python")" && pwd)/$(basename "$python")"
else
    python="$(command -v "$python")"
fi
lean=0
[[ "${1:-}" == "--lean" ]] && lean=1

work="$(mktemp -d "${TMPDIR:-/tmp}/headrace-image-check.XXXXXX")"
server_pid=""
cleanup() {
    if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill -KILL "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

# What the Dockerfile says: the COPY sources, the pip install arguments, the CMD.
read_dockerfile() {
    "$python" - "$dockerfile" "$1" <<'PY'
import json, shlex, sys
text = open(sys.argv[1]).read().replace("\\\n", " ")
lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
what = sys.argv[2]
for line in lines:
    word, _, rest = line.partition(" ")
    if what == "copies" and word == "COPY":
        *sources, _target = shlex.split(rest)
        print("\n".join(sources))
    elif what == "install" and word == "RUN" and rest.startswith("pip install"):
        print("\n".join(shlex.split(rest)[2:]))
    elif what == "cmd" and word == "CMD":
        print("\n".join(json.loads(rest)))
PY
}

mapfile -t copies < <(read_dockerfile copies)
mapfile -t install_args < <(read_dockerfile install)
mapfile -t cmd < <(read_dockerfile cmd)
[[ ${#install_args[@]} -gt 0 ]] || { echo "no 'RUN pip install' in $dockerfile" >&2; exit 1; }
[[ ${#cmd[@]} -gt 0 ]] || { echo "no exec-form CMD in $dockerfile" >&2; exit 1; }

app="$work/srv"
mkdir -p "$app"
for source in "${copies[@]}"; do
    cp -R "$repo/$source" "$app/"
done

"$python" -m venv --without-pip "$work/venv"  # this Python's pip installs into it
venv_python="$work/venv/bin/python"
pip=("$python" -m pip --python "$venv_python" install --quiet --disable-pip-version-check)
if [[ $lean == 1 ]]; then
    # The dependencies the Dockerfile would install, taken from this Python instead.
    # (Where FastAPI is found: the .pth files there are not read, so no other headrace.)
    site="$("$python" -c 'import fastapi, os; print(os.path.dirname(os.path.dirname(fastapi.__file__)))')"
    venv_site="$("$venv_python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
    echo "$site" > "$venv_site/zz-image-check-dependencies.pth"
    pip+=(--no-deps --ignore-installed --no-build-isolation)
fi
started=$(date +%s)
(cd "$app" && "${pip[@]}" "${install_args[@]}")
echo "installed headrace (${install_args[*]}) in $(( $(date +%s) - started )) s"
installed="$(cd / && "$venv_python" -c 'import headrace; print(headrace.__file__)')"
[[ "$installed" == "$work/venv/"* ]] || { echo "headrace is imported from $installed, not the venv" >&2; exit 1; }

port="$("$venv_python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
args=()
for ((i = 0; i < ${#cmd[@]}; i++)); do
    case "${cmd[$i]}" in
        --host) args+=(--host 127.0.0.1); i=$((i + 1)) ;;
        --port) args+=(--port "$port"); i=$((i + 1)) ;;
        *) args+=("${cmd[$i]}") ;;
    esac
done
program="$work/venv/bin/${args[0]}"
[[ -x "$program" ]] || { echo "the CMD's program ${args[0]} was not installed" >&2; exit 1; }

cd "$app"
env -u HEADRACE_DATABASE_URL -u HEADRACE_API_KEY HEADRACE_HOME="$work/home" \
    "$program" "${args[@]:1}" >"$work/server.log" 2>&1 &
server_pid=$!

probe() {  # GET $1 until it answers 200, for at most 60 s
    "$venv_python" - "http://127.0.0.1:$port$1" <<'PY'
import sys, time, urllib.request
deadline = time.monotonic() + 60
while True:
    try:
        with urllib.request.urlopen(sys.argv[1], timeout=2) as response:
            if response.status == 200:
                break
    except OSError:
        pass
    if time.monotonic() > deadline:
        sys.exit(f"{sys.argv[1]} did not answer 200 within 60 s")
    time.sleep(0.1)
PY
}

if ! probe /health || ! probe /ready; then
    cat "$work/server.log" >&2
    exit 1
fi
echo "${args[*]}: /health and /ready answer 200 on 127.0.0.1:$port"

kill -TERM "$server_pid"
status=0
wait "$server_pid" || status=$?
server_pid=""
if [[ $status != 0 ]]; then
    echo "it exited with $status after SIGTERM" >&2
    cat "$work/server.log" >&2
    exit 1
fi
echo "stopped by SIGTERM: exit 0"
