#!/usr/bin/env bash
# Installs the Debian packages `npm test` needs beyond npm and Python: Slurm's daemons and client commands
# and munge (the Slurm executor tests start a one-node cluster on loopback), tmux (the live view is
# tested in a real terminal) and openssl (a self-signed certificate for the Ray-over-https test). Ray
# comes from PyPI with the locked Python environment (`anneal setup`), not from here. `npm test` runs
# this first. Idempotent: when everything is there it only looks (a few milliseconds) and installs
# nothing; otherwise it installs just the missing packages.
#
# apt-get needs root: run as root it installs directly; otherwise it uses `sudo -n` (sudo without a
# password prompt) when that works, and else stops with exit 1, naming the packages and the command to
# run as root. (The Slurm tests run their own slurmctld and slurmd as root too.)
set -euo pipefail

# SeaweedFS (the remote-store tests' S3 server) is built from Go sources, once per machine and without
# root, into ${ANNEAL_CACHE_DIR:-~/.cache/anneal}/seaweedfs-<version>/; a second run only looks.
bash "$(dirname "${BASH_SOURCE[0]}")/install-seaweedfs.sh"

# command -> the Debian package that provides it
declare -A package_of=(
  [sbatch]=slurm-client [squeue]=slurm-client [scontrol]=slurm-client [scancel]=slurm-client [sinfo]=slurm-client
  [slurmctld]=slurmctld [slurmd]=slurmd [munged]=munge [tmux]=tmux [openssl]=openssl
)

missing=()
for cmd in "${!package_of[@]}"; do
  # daemons live in /usr/sbin, which is not on a non-root user's PATH
  command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || [ -x "/sbin/$cmd" ] || missing+=("${package_of[$cmd]}")
done
if [ "${#missing[@]}" -eq 0 ]; then
  echo "test deps: slurm, munge, tmux and openssl already installed"
  exit 0
fi
mapfile -t packages < <(printf '%s\n' "${missing[@]}" | sort -u)

as_root=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    as_root=(sudo -n)
  else
    echo "test deps: missing Debian packages ${packages[*]}; installing them needs root:" \
      "run \`sudo bash scripts/install-test-deps.sh\` (or apt-get install ${packages[*]} as root), then npm test again" >&2
    exit 1
  fi
fi

echo "test deps: installing ${packages[*]} with apt-get"
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
# The Slurm packages may start system daemons where an init system runs; the tests start their own on
# loopback with their own configuration and never use these.
echo "test deps: installed ${packages[*]}"
