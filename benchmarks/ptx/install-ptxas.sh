#!/usr/bin/env bash
# Installs ptxas, cuobjdump and nvdisasm (CUDA 11.8, from Debian 12's non-free nvidia-cuda-toolkit package) into
# .tools/cuda/bin of this repository, without a GPU, a driver or any other CUDA package: they assemble the PTX that
# ILGPU emits into sm_90 machine code, which tells registers per thread, spills and instructions offline
# (benchmarks/ptx/resources.sh, PtxAssemblerTests). The package index is read with a private sources list and
# state folder, so the machine's apt configuration is left as it is. Idempotent.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
dest="$root/.tools/cuda"
if [[ -x "$dest/bin/ptxas" && -x "$dest/bin/cuobjdump" ]]; then
  echo "ptxas already in $dest/bin"
  exit 0
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/sources.list.d" "$work/lists/partial" "$work/cache/archives/partial"
cat > "$work/sources.list.d/non-free.sources" <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: non-free
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
apt_opts=(-o "Dir::Etc::SourceList=/dev/null" -o "Dir::Etc::SourceParts=$work/sources.list.d"
          -o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work/cache" -o "APT::Sandbox::User=root" -qq)
apt-get "${apt_opts[@]}" update
(cd "$work" && apt-get "${apt_opts[@]}" download nvidia-cuda-toolkit)
dpkg-deb -x "$work"/nvidia-cuda-toolkit_*.deb "$work/x"
mkdir -p "$dest/bin"
for tool in ptxas cuobjdump nvdisasm; do install -m 755 "$work/x/usr/bin/$tool" "$dest/bin/$tool"; done
"$dest/bin/ptxas" --version | tail -1
