# shellcheck shell=bash
# Sourced by scripts/get-*: the one place for where tools are cached, when a copy already on PATH
# will do, how concurrent runs for one tool wait for each other, how a binary is put in place, and
# how Go builds one. The sourcing script sets `tool` (its name in messages) first.
#
# Environment:
#   XDG_CACHE_HOME       cache root (default ~/.cache); tools go to $XDG_CACHE_HOME/whatsapp-relay/bin
#   WHATSAPP_RELAY_BIN   another directory for the binaries
#   GO                   the go command (default: go on PATH)

cache_root="${XDG_CACHE_HOME:-$HOME/.cache}/whatsapp-relay"
bin_dir="${WHATSAPP_RELAY_BIN:-$cache_root/bin}"
# kubeconform's JSON schemas: written by scripts/get-kubeconform, read by scripts/kubeconform.
schema_dir="$bin_dir/../schemas"

log() { printf 'get-%s: %s\n' "$tool" "$*" >&2; }
die() { log "$*"; exit 1; }

# version_fits HAVE PINNED: HAVE is no older than PINNED and within its compatible series (the
# same major version; the same 0.MINOR below 1.0), so a newer patch or minor release will do and
# a new major version, whose behaviour may differ, will not.
version_fits() {
    local have="${1#v}" pinned="${2#v}" series
    have="${have%%+*}" # build metadata: v4.3.1+g1a2b3c -> 4.3.1; a pre-release (-rc.1) never fits
    [[ "$have" =~ ^[0-9]+(\.[0-9]+)*$ ]] || return 1
    if [[ "$pinned" == 0.* ]]; then series="$(cut -d. -f1-2 <<<"$pinned")"; else series="${pinned%%.*}"; fi
    [[ "$have" == "$series" || "$have" == "$series".* ]] || return 1
    [[ "$(printf '%s\n%s\n' "$pinned" "$have" | sort -V | head -n 1)" == "$pinned" ]]
}

# pick_binary ENV_VALUE NAME PINNED VERSION_FN: find a binary to use without building one and
# set `picked` to it, or return 1. ENV_VALUE (the caller's HELM, PROMTOOL, ... variable) is taken
# as is: the user chose it. Otherwise NAME on PATH is used when VERSION_FN (a function printing a
# binary's version) says it fits PINNED.
pick_binary() {
    local chosen="$1" name="$2" pinned="$3" version_fn="$4" found version
    if [[ -n "$chosen" ]]; then
        [[ -x "$chosen" ]] || die "$chosen (from the environment) is not an executable file"
        log "using $chosen, as the environment says ($("$version_fn" "$chosen" 2>/dev/null || echo "version unknown"))"
        picked="$chosen"
        return 0
    fi
    found="$(command -v "$name" 2>/dev/null)" || return 1
    version="$("$version_fn" "$found" 2>/dev/null)" || version=""
    if version_fits "$version" "$pinned"; then
        log "using $found ($name $version on PATH fits $pinned)"
        picked="$found"
        return 0
    fi
    log "not using $found: $name ${version:-of unknown version} does not fit $pinned"
    return 1
}

# lock_tool NAME: hold a lock for NAME until the script exits, so that a second run (make tools
# and a test at once) waits for the first one's build and then finds it cached.
lock_tool() {
    mkdir -p "$bin_dir"
    exec 9>"$bin_dir/.$1.lock"
    if command -v flock >/dev/null 2>&1; then
        flock 9
    fi
}

# scratch_dir: a temporary directory next to the cache, removed when the script exits.
scratch_dir() {
    scratch="$(mktemp -d "$bin_dir/.build-$tool.XXXXXX")"
    trap 'rm -rf "$scratch"' EXIT
}

# install_binary FILE TARGET [LINK]: move FILE to TARGET only once it is complete, so that an
# interrupted run never leaves a broken binary behind; LINK (a version-less name) points to it.
install_binary() {
    chmod 0755 "$1"
    mv -f "$1" "$2.tmp.$$"
    mv -f "$2.tmp.$$" "$2"
    if [[ -n "${3:-}" ]]; then
        ln -sfn "$(basename "$2")" "$bin_dir/$3"
    fi
}

# go_build PACKAGE@VERSION LDFLAGS [TAGS]: `go install` into $scratch with the flags every build
# here shares: no cgo (a static binary), -trimpath, no symbol table or DWARF (-s -w: a smaller
# binary and a faster link), and no DWARF made in the first place (-dwarf=false for every
# package: the linker's -w drops it anyway; 5% less compile CPU for helm and promtool, the same
# machine code). Optimisation stays on: without it (-N -l) the builds take another 7% less CPU,
# but helm and promtool run twice as slowly, in every later run of the suite. The Go module and
# build caches are the user's own (GOMODCACHE, GOCACHE), shared by every build, so modules two
# tools both need are downloaded once.
go_build() {
    local package="$1" ldflags="$2" tags="${3:-}" go="${GO:-go}"
    command -v "$go" >/dev/null 2>&1 ||
        die "Go is needed to build $package (https://go.dev/dl/), or put a fitting $tool on PATH"
    # GOFLAGS is cleared so that a caller's -mod=vendor or similar cannot break a module-mode
    # install; GOTOOLCHAIN=auto lets an older local Go fetch the toolchain the module asks for.
    local install=(env GOBIN="$scratch" CGO_ENABLED=0 GOFLAGS=-buildvcs=false
        GOTOOLCHAIN="${GOTOOLCHAIN:-auto}" "$go" install -trimpath -gcflags=all=-dwarf=false
        -ldflags "-s -w $ldflags" ${tags:+-tags "$tags"} "$package")
    # helm, promtool and kubeconform, built side by side by scripts/get-tools, compile the same
    # standard library and Kubernetes client modules (same versions, same flags), and the build
    # cache only shares what is finished: compiled at the same time, each would compile them
    # again. So the modules download side by side (-n: fetch and plan, compile nothing) and the
    # compiles take turns, each using every core anyway.
    "${install[@]}" -n >/dev/null 2>&1 || true # a failure shows again, with its message, below
    local lock_fd
    exec {lock_fd}>"$bin_dir/.go-build.lock"
    if command -v flock >/dev/null 2>&1; then
        flock "$lock_fd"
    fi
    "${install[@]}" >&2
    exec {lock_fd}>&-
}
