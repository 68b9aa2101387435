#!/usr/bin/env bash
# `make sanity`: ansible-test sanity on the collection's tracked files, with no ignore entries.
#
# ansible-test only runs inside .../ansible_collections/<namespace>/<name>, and it only looks at files
# git tracks, so the tracked files are copied into such a path in a temporary directory (its own git
# repository) and tested there. Untracked work in progress in the checkout is not part of the run.
#
# ansible-test downloads a get-pip bootstrap script from a host some machines cannot reach; the stand-in
# tools/get_pip_offline.py goes into its cache first (it bootstraps pip with ensurepip instead).
#   tools/sanity.sh [extra ansible-test sanity arguments, e.g. --test validate-modules]
set -euo pipefail
cd "$(dirname "$0")/.."
project=$PWD
python_version=${SANITY_PYTHON:-3.11}

cache="${HOME}/.ansible/test/cache"
mkdir -p "$cache"
cp tools/get_pip_offline.py "$cache/get_pip_24_2.py"

workdir=$(mktemp -d "${TMPDIR:-/tmp}/tracehub-sanity.XXXXXX")
trap 'rm -rf "$workdir"' EXIT
collection="$workdir/ansible_collections/tracehub/deploy"
mkdir -p "$collection"
# Tracked files as they are in the working tree (deleted ones skipped).
git ls-files -z | while IFS= read -r -d '' file; do
  if [[ -e "$file" ]]; then
    mkdir -p "$collection/$(dirname "$file")"
    cp -p "$file" "$collection/$file"
  fi
done
(
  cd "$collection"
  git init -q
  git add -A
  git -c user.name=sanity -c user.email=sanity@localhost commit -q -m "sanity snapshot"
)

cd "$collection"
PATH="$project/.venv/bin:$PATH" ansible-test sanity --python "$python_version" --requirements "$@"
