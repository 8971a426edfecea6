#!/usr/bin/env bash
# Prepare everything scripts/tipc-vm/run.sh needs to boot a guest with a TIPC kernel, and print
# two absolute paths on stdout: the build directory and the initramfs to boot with.
#
# Why a guest at all: the host kernel here has no CONFIG_TIPC (socket(AF_TIPC) fails with
# EAFNOSUPPORT), Debian's stock kernel has it as a module.  The guest shares the host's / over 9p,
# so the only things we need beyond qemu are that kernel, its modules and a static busybox.
#
# What it does (each step only when its output is missing; a warm run takes well under a second):
#   1. apt-get install --no-install-recommends qemu-system-x86, if qemu-system-x86_64 is missing;
#   2. resolves the kernel package linux-image-amd64 currently points at (the ABI number in the
#      name changes with every security update, and old ones leave the mirror), and the
#      busybox-static version;
#   3. `apt-get download`s both (they are NOT installed on the host), unpacks them with dpkg -x,
#      drops the hardware drivers the guest never sees, runs depmod (busybox's: the host has no
#      kmod), and decompresses the bzImage into an ELF vmlinux, which qemu can start through
#      its PVH entry point: that skips the real-mode setup and the in-guest decompression, ~3 s
#      under TCG;
#   4. builds a small initramfs (busybox, the guest scripts, the modules needed to reach the
#      9p root), named after a hash of its inputs so that editing a guest script rebuilds it.
#
# Cache layout, OUTSIDE the clone so fresh clones on a reused machine skip the downloads:
#   $PYCLM_TIPC_CACHE (default ${XDG_CACHE_HOME:-$HOME/.cache}/pyclm/tipc-vm)
#     setup.lock                    flock: concurrent setups wait for each other
#     apt-resolved                  "kernel-package kernel-version busybox-version", reused
#                                   until apt's package lists change
#     builds/<id>/                  one kernel + busybox; never modified once in place
#       root/lib/modules/<KV>/      pruned modules with modules.dep, bind-mounted in the guest
#       vmlinux  vmlinuz  busybox  kver
#       initramfs-<hash>.cpio.gz
#       in-use                      run.sh holds a shared flock on it while a guest runs, so a
#                                   setup that installs a newer kernel never deletes it under them
# Everything is built in a temporary directory and renamed into place, so an interrupted setup
# leaves nothing half-made behind.
#
# Env: PYCLM_TIPC_CACHE (above); PYCLM_TIPC_KERNEL_PACKAGE forces a kernel package name.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${PYCLM_TIPC_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pyclm/tipc-vm}"
# Bump when the way builds/<id> is made changes (pruning, depmod, ...), so old builds are redone.
build_recipe=1

say() { echo "tipc-vm setup: $*" >&2; }
die() { say "$*"; exit 1; }

mkdir -p "$cache/builds"
exec 9>"$cache/setup.lock"
flock 9

# --- 1. qemu ---------------------------------------------------------------------------------
apt_lists_present() { compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null; }
apt_install() {
    # Lock timeout: wait for another apt/dpkg run (another session) instead of failing at once.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=300 --no-install-recommends "$@" >/dev/null
}
if ! command -v qemu-system-x86_64 >/dev/null; then
    [ "$(id -u)" = 0 ] || die "qemu-system-x86_64 is missing; install qemu-system-x86 (needs root)"
    say "installing qemu-system-x86 (--no-install-recommends, ~17 MB download)"
    apt_lists_present || apt-get update -qq
    # Lists can be stale (a dependency's old version already left the mirror): refresh, retry.
    apt_install qemu-system-x86 || { apt-get update -qq && apt_install qemu-system-x86; }
fi

# --- 2. which kernel and busybox -------------------------------------------------------------
resolve_packages() {
    local kpkg="${PYCLM_TIPC_KERNEL_PACKAGE:-}"
    if [ -z "$kpkg" ]; then
        kpkg="$(apt-cache depends linux-image-amd64 2>/dev/null |
            awk '$1 == "Depends:" && $2 ~ /^linux-image-/ { print $2; exit }')"
    fi
    [ -n "$kpkg" ] || return 1
    local kver bbver
    kver="$(apt-cache policy "$kpkg" 2>/dev/null | awk '$1 == "Candidate:" { print $2; exit }')"
    bbver="$(apt-cache policy busybox-static 2>/dev/null | awk '$1 == "Candidate:" { print $2; exit }')"
    [ -n "$kver" ] && [ "$kver" != "(none)" ] && [ -n "$bbver" ] && [ "$bbver" != "(none)" ] || return 1
    echo "$kpkg $kver $bbver"
}

# apt-cache takes ~1 s here, too slow for every run: reuse the last answer until apt's lists
# change (an `apt-get update` that brings a new kernel is exactly when we want a rebuild).
resolved="$cache/apt-resolved"
if [ -s "$resolved" ] && [ -z "${PYCLM_TIPC_KERNEL_PACKAGE:-}" ] && apt_lists_present &&
    [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*_Packages*' -newer "$resolved" -print -quit)" ]; then
    read -r kpkg kver bbver <"$resolved"
else
    if ! apt_lists_present || ! answer="$(resolve_packages)"; then
        apt-get update -qq || true
        answer="$(resolve_packages)" || answer=""
    fi
    if [ -n "$answer" ]; then
        echo "$answer" >"$resolved"
        read -r kpkg kver bbver <<<"$answer"
    elif [ -s "$resolved" ]; then
        # Offline, or apt broken: the last build we made is still good enough.
        say "cannot ask apt which kernel is current; using the last one"
        read -r kpkg kver bbver <"$resolved"
    else
        die "cannot resolve linux-image-amd64 / busybox-static with apt-cache"
    fi
fi

# A build directory name must not contain ':' (epochs) or '/'.
build_id="r${build_recipe}_${kpkg}_${kver}_busybox_${bbver}"
build_id="${build_id//[:\/]/+}"
build="$cache/builds/$build_id"

# --- 3. kernel, modules, busybox -------------------------------------------------------------
# Hardware the guest never has (it sees virtio, and the veths/bridges made inside it). Dropping
# these takes the modules from ~390 MB to ~100 MB; keep drivers/net's top-level modules (veth,
# dummy, macvlan, tun, virtio_net, ...), and all of net/, fs/, crypto/ and lib/.
prune_modules() {
    local k="$1"
    rm -rf "$k/sound"
    find "$k/drivers" -mindepth 1 -maxdepth 1 -type d \
        ! -name net ! -name virtio ! -name char ! -name block ! -name vhost -exec rm -rf {} +
    find "$k/drivers/net" -mindepth 1 -maxdepth 1 -type d \
        ! -name bonding ! -name team ! -name vxlan ! -name netdevsim -exec rm -rf {} +
}

# The bzImage carries the kernel as an XZ stream; find the one that decompresses to an ELF.
extract_vmlinux() {
    python3 - "$1" "$2" <<'PY'
import lzma
import sys

image = open(sys.argv[1], "rb").read()
start = image.find(b"\xfd7zXZ\x00")
while start >= 0:
    try:
        elf = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(image[start:])
    except lzma.LZMAError:
        elf = b""
    if elf[:4] == b"\x7fELF":
        open(sys.argv[2], "wb").write(elf)
        sys.exit(0)
    start = image.find(b"\xfd7zXZ\x00", start + 1)
sys.exit("no XZ-compressed ELF found in " + sys.argv[1])
PY
}

if [ ! -d "$build" ]; then
    say "preparing $kpkg $kver + busybox-static $bbver (~72 MB download)"
    tmp="$(mktemp -d "$cache/builds/.new.XXXXXX")"
    # `apt-get download` as root drops to the _apt user, which cannot write into a directory
    # under /root: keep the download as root.
    if ! (cd "$tmp" && apt-get download -qq -o APT::Sandbox::User=root \
        "$kpkg=$kver" "busybox-static=$bbver" >/dev/null); then
        rm -rf "$tmp"
        die "apt-get download $kpkg=$kver busybox-static=$bbver failed (apt-get update may help)"
    fi
    dpkg -x "$tmp"/linux-image-*.deb "$tmp/root"
    dpkg -x "$tmp"/busybox-static_*.deb "$tmp/bb"
    mv "$tmp/bb/bin/busybox" "$tmp/busybox"
    rm -rf "$tmp"/*.deb "$tmp/bb"
    kv="$(ls "$tmp/root/lib/modules")"
    echo "$kv" >"$tmp/kver"
    mv "$tmp/root/boot/vmlinuz-$kv" "$tmp/vmlinuz"
    rm -rf "$tmp/root/boot" "$tmp/root/usr" "$tmp/root/etc"
    prune_modules "$tmp/root/lib/modules/$kv/kernel"
    "$tmp/busybox" depmod -b "$tmp/root" "$kv"
    # Without python3 the guest still boots, from the bzImage, ~3 s slower.
    extract_vmlinux "$tmp/vmlinuz" "$tmp/vmlinux" || { say "no vmlinux: booting the bzImage"; rm -f "$tmp/vmlinux"; }
    : >"$tmp/in-use"
    mv -T "$tmp" "$build"
    say "kernel $kv ready in $build"

    # Older builds go, unless a guest is running from them right now.
    for old in "$cache"/builds/*/; do
        old="${old%/}"
        [ "$old" = "$build" ] && continue
        if flock -n -x "$old/in-use" true 2>/dev/null; then rm -rf "$old"; fi
    done
fi
# Leftovers of an interrupted setup (we hold the lock, so nobody else is building).
rm -rf "$cache"/builds/.new.*

# --- 4. initramfs ------------------------------------------------------------------------------
# Its inputs: the two guest scripts, this script (how it is packed) and the build's busybox and
# modules (covered by living inside the build directory).
hash="$(cat "$here/guest-init.sh" "$here/guest-stage2.sh" "$here/setup.sh" | sha256sum | cut -c1-16)"
initrd="$build/initramfs-$hash.cpio.gz"
if [ ! -s "$initrd" ]; then
    kv="$(cat "$build/kver")"
    moddir="$build/root/lib/modules/$kv"
    ir="$(mktemp -d "$build/.initramfs.XXXXXX")"
    mkdir -p "$ir/bin" "$ir/dev" "$ir/proc" "$ir/sys" "$ir/newroot" "$ir/lib/modules/$kv"
    cp "$build/busybox" "$ir/bin/busybox"
    cp "$here/guest-init.sh" "$ir/init"
    cp "$here/guest-stage2.sh" "$ir/stage2"
    chmod 755 "$ir/init"
    # What /init needs to reach the host's root: PCI virtio transport, the console ports, 9p
    # over virtio and overlayfs.  Copy them with everything modules.dep says they depend on,
    # then let busybox depmod write a modules.dep for the copy, so that /init can simply
    # `modprobe` them in the right order.
    for m in virtio_pci virtio_console 9pnet_virtio 9p overlay; do
        line="$(grep -E "(^|/)$m\.ko(\.[a-z]+)?:" "$moddir/modules.dep" || true)"
        if [ -z "$line" ]; then
            grep -qE "(^|/)$m\.ko" "$moddir/modules.builtin" || die "kernel $kv has no module $m"
            continue
        fi
        for f in ${line/:/}; do
            mkdir -p "$ir/lib/modules/$kv/$(dirname "$f")"
            cp "$moddir/$f" "$ir/lib/modules/$kv/$f"
        done
    done
    cp "$moddir/modules.builtin" "$ir/lib/modules/$kv/"
    "$build/busybox" depmod -b "$ir" "$kv"
    (cd "$ir" && find . | "$build/busybox" cpio -o -H newc 2>/dev/null | gzip -1 >"$ir.cpio.gz")
    mv "$ir.cpio.gz" "$initrd"
    rm -rf "$ir"
    # Initramfs images of older guest scripts: qemu reads the image once at start, so one that
    # a running guest booted from can go; keep any made in the last hour, in case another clone
    # with other guest scripts is about to boot it.
    find "$build" -maxdepth 1 -name 'initramfs-*.cpio.gz' ! -name "${initrd##*/}" -mmin +60 -delete
    say "initramfs $(du -h "$initrd" | cut -f1) for kernel $kv"
else
    touch "$initrd"  # "recently used", for the clean-up above in other clones
fi
rm -rf "$build"/.initramfs.*

echo "$build"
echo "$initrd"
