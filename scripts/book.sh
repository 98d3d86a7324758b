#!/usr/bin/env bash
# The book (docs/, an mdBook: docs/book.toml).
#
#   scripts/book.sh install   installs mdbook from crates.io if it is missing (Debian 12 has no
#                             package): `cargo install mdbook --locked --no-default-features`,
#                             about 2.5 min of CPU; scripts/test.sh runs it in the background
#   scripts/book.sh build     builds the book into target/book (what CI checks: it must build;
#                             tests/book.rs checks its links, its generated pages and the
#                             commands it names)
#   scripts/book.sh serve     serves it on 127.0.0.1:3000 while you edit
set -euo pipefail
cd "$(dirname "$0")/.."

MDBOOK_VERSION=0.5.4
MDBOOK=${CARGO_HOME:-$HOME/.cargo}/bin/mdbook

have() { [[ -x $MDBOOK ]] && "$MDBOOK" --version 2>/dev/null | grep -q "v$MDBOOK_VERSION\$"; }

install() {
    if have; then
        echo "book: mdbook $MDBOOK_VERSION present"
        return
    fi
    echo "book: installing mdbook $MDBOOK_VERSION (cargo install)"
    # Without default features: no `serve` web server and no file watcher, which CI does not need.
    cargo install mdbook --version "$MDBOOK_VERSION" --locked --no-default-features --quiet
}

case ${1:-build} in
install) install ;;
build)
    have || { echo "book: mdbook $MDBOOK_VERSION missing: bash scripts/book.sh install" >&2; exit 1; }
    out=$("$MDBOOK" build docs 2>&1) || { echo "$out" >&2; exit 1; }
    echo "$out"
    # mdbook reports a missing include or a bad SUMMARY entry as an error (failing above), and
    # other problems as warnings: those fail the build too.
    if grep -E '^ *(WARN|ERROR)' <<<"$out"; then
        echo "book: warnings above" >&2
        exit 1
    fi
    [[ -s target/book/index.html ]] || { echo "book: no target/book/index.html" >&2; exit 1; }
    echo "book: built into target/book ($(find target/book -name '*.html' | wc -l) pages)"
    ;;
serve)
    # The `serve` feature is left out of the CI install: install it with default features.
    cargo install mdbook --version "$MDBOOK_VERSION" --locked --quiet
    "$MDBOOK" serve docs -n 127.0.0.1 -p 3000
    ;;
*) echo "usage: scripts/book.sh [install|build|serve]" >&2; exit 2 ;;
esac
