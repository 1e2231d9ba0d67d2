# shellcheck shell=bash
# Puts Node.js 22 or 24 LTS first on this shell's PATH, fetched from the npm registry (the
# `node-linux-<arch>` package: the official binary with its headers) into a cache folder on first
# use. Also points npm_config_nodedir at those headers, so native modules build without
# downloading anything. For machines whose own Node is older than 22 (Debian 12 and 13 ship 18
# and 20), and for .ci/run, which runs the suite on both versions.
#
#   source scripts/use-node.sh 24      # or 22
#
# The versions are the ones the suite last passed on; VAULTIK_NODE_CACHE moves the cache
# (default ~/.cache/vaultik/node; /var/cache/vaultik/node for root).
case "${1:-}" in
  22) _vk_version=22.23.3 ;;
  24) _vk_version=24.21.0 ;;
  *) echo "usage: source scripts/use-node.sh 22|24" >&2; return 2 2>/dev/null || exit 2 ;;
esac
case "$(uname -m)" in
  x86_64) _vk_arch=x64 ;;
  aarch64 | arm64) _vk_arch=arm64 ;;
  *) echo "use-node: no node-linux package for $(uname -m)" >&2; return 1 2>/dev/null || exit 1 ;;
esac
# Root gets a system folder: /root is private, and the suite runs vaultik as `nobody` too.
if [ "$(id -u)" = 0 ]; then _vk_cache=/var/cache/vaultik/node; else _vk_cache="${XDG_CACHE_HOME:-$HOME/.cache}/vaultik/node"; fi
_vk_dir="${VAULTIK_NODE_CACHE:-$_vk_cache}/$_vk_version"
_vk_home="$_vk_dir/node_modules/node-linux-$_vk_arch"
if [ ! -x "$_vk_home/bin/node" ]; then
  echo "use-node: installing Node.js $_vk_version (npm package node-linux-$_vk_arch) into $_vk_dir" >&2
  mkdir -p "$_vk_dir"
  npm install --prefix "$_vk_dir" --no-save --no-package-lock --no-audit --no-fund --loglevel=error \
    "node-linux-$_vk_arch@$_vk_version" >&2 || { echo "use-node: install failed" >&2; return 1 2>/dev/null || exit 1; }
fi
export PATH="$_vk_home/bin:$PATH"
export npm_config_nodedir="$_vk_home"
echo "use-node: $(command -v node) $(node --version)" >&2
unset _vk_version _vk_arch _vk_cache _vk_dir _vk_home
