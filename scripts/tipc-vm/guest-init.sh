#!/bin/busybox sh
# /init of the guest's initramfs (stage 1, busybox ash, PID 1).
#
# Builds the guest's root file system out of the host's: the host's / arrives read-only over
# 9p (tag "hostroot") and becomes the lower layer of an overlayfs whose upper layer is a tmpfs.
# So the guest runs the host's own python, bash, ip and tipc, can write anywhere, and whatever it
# writes outside the shared working directory vanishes at power-off.  Then switch_root into that
# and hand over to stage 2 (guest-stage2.sh) as PID 1.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

# Anything that fails here is the harness's fault, not the command's: say so on the serial
# console (run.sh prints its tail when no exit status comes back) and power off.
fail() {
    echo "pyclm tipc-vm stage 1: $*" >/dev/console
    poweroff -f
    sleep 10
}

# setup.sh put exactly these modules (and what they depend on) into the initramfs.
modprobe -a virtio_pci virtio_console 9pnet_virtio 9p overlay || fail "modprobe of the virtio/9p/overlay modules"

# msize: 256 KiB messages instead of the 8 KiB default make reading files much cheaper.
# cache=loose: the guest may cache the host's files; they do not change during a run (the
# working directory, which may, is mounted separately without caching by stage 2).
ninep="trans=virtio,version=9p2000.L,msize=262144"
mkdir -p /lower /upper
mount -t 9p -o "ro,cache=loose,$ninep" hostroot /lower || fail "mount the host's / (9p tag hostroot)"
mount -t tmpfs -o mode=755 upper /upper || fail "tmpfs for the overlay"
mkdir -p /upper/data /upper/work
mount -t overlay -o lowerdir=/lower,upperdir=/upper/data,workdir=/upper/work overlay /newroot ||
    fail "overlay root"

# A fresh /run: the host's (network namespace names, pid files, sockets) must not show up here.
# It also holds our control share, where run.sh left the command and where its status goes.
mount -t tmpfs -o mode=755,nosuid,nodev run /newroot/run || fail "tmpfs /run"
mkdir -p /newroot/run/pyclm-vm/ctl
mount -t 9p -o "cache=none,$ninep" pyclmctl /newroot/run/pyclm-vm/ctl || fail "mount the control share"
cp /bin/busybox /stage2 /newroot/run/pyclm-vm/

for d in proc sys dev; do mount --move "/$d" "/newroot/$d"; done
exec switch_root /newroot /run/pyclm-vm/busybox sh /run/pyclm-vm/stage2
