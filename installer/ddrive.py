"""``qss-get --mount-ddrive`` (the manual's ``--mount-Ddrive``): mount the data drive, the
file system labeled ``DATA``, at ``/ssd`` now and at every boot.

Finds it through the block-device probe (``lsblk``), adds one ``/etc/fstab`` line naming
it by UUID (device names such as ``/dev/sdb1`` change when drives are added) with
``nofail``, so a missing drive never stops the boot (supervisor's ``RequiresMountsFor``
then keeps the services down instead of filling the system disk), creates ``/ssd`` and
mounts it. Idempotent: a second run changes nothing. An fstab line that mounts something
else at ``/ssd`` is the operator's and is not replaced: the command refuses and says so.
"""
from __future__ import annotations

import os
import shutil
import stat

from .environment import Environment
from .files import DeployError, atomic_write, target_path
from .hooks import DataTools

LABEL = "DATA"
MOUNT_POINT = "/ssd"
FSTAB = "/etc/fstab"


def mount_ddrive(env: Environment, tools: DataTools) -> None:
    """Find the DATA file system, add its fstab line, create /ssd and mount it.

    Raises:
        DeployError: no such drive, several, no UUID, a conflicting fstab line, or
            mount failed.
    """
    devices = tools.block_devices()
    found = [d for d in devices if d.label == LABEL]
    if not found:
        labels = ", ".join(f"{d.path} ({d.label})" for d in devices if d.label) or "none"
        raise DeployError(f"no file system labeled {LABEL} (labeled ones: {labels}); plug "
                          f"in the data drive, or label it: sudo e2label /dev/sdX1 {LABEL}")
    if len(found) > 1:
        raise DeployError(f"{len(found)} file systems are labeled {LABEL} "
                          f"({', '.join(d.path for d in found)}); unplug or relabel all but "
                          f"the data drive")
    drive = found[0]
    if not drive.uuid:
        raise DeployError(f"{drive.path} (label {LABEL}) has no file-system UUID; format it "
                          f"first")
    spec = f"UUID={drive.uuid}"
    fstab = target_path(env.root, FSTAB)
    text = fstab.read_text(encoding="utf-8") if fstab.exists() else ""
    present = False
    for n, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields or fields[0].startswith("#") or len(fields) < 2:
            continue
        if fields[1] == MOUNT_POINT:
            if fields[0] in (spec, drive.path, f"LABEL={LABEL}"):
                present = True
                continue
            raise DeployError(f"{fstab} line {n} already mounts {fields[0]} at "
                              f"{MOUNT_POINT}; remove that line to use {drive.path} "
                              f"(label {LABEL}) and run again")
    if present:
        env.say(f"unchanged {fstab} (it mounts {drive.path}, label {LABEL}, at "
                f"{MOUNT_POINT})")
    else:
        line = (f"# The data drive (label {LABEL}, {drive.path} when added), by qss-get "
                f"--mount-ddrive\n{spec}\t{MOUNT_POINT}\t{drive.fstype or 'auto'}\t"
                f"defaults,nofail\t0\t2\n")
        mode = 0o644
        if fstab.exists():
            mode = stat.S_IMODE(fstab.stat().st_mode)
            saved = fstab.with_name(f"fstab.qss-bak-{env.clock():%Y%m%dT%H%M%S}")
            shutil.copy2(fstab, saved)
            env.say(f"saved     {fstab} as {saved}")
        new = text + ("" if not text or text.endswith("\n") else "\n") + line
        atomic_write(fstab, new.encode(), mode)
        env.say(f"added     {spec} {MOUNT_POINT} ({drive.path}, nofail) to {fstab}")
    point = target_path(env.root, MOUNT_POINT)
    if not point.is_dir():
        os.makedirs(point, mode=0o755)
        env.say(f"created   {point}")
    if MOUNT_POINT in drive.mountpoints:
        env.say(f"mounted   {drive.path} is already mounted at {MOUNT_POINT}")
    elif tools.mount is None:
        env.say(f"written under {env.root}; nothing was mounted")
    else:
        code, output = tools.mount(MOUNT_POINT)
        if code != 0:
            raise DeployError(f"mount {MOUNT_POINT} failed (exit status {code}): {output}")
        env.say(f"mounted   {drive.path} at {MOUNT_POINT}")
