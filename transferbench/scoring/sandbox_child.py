"""The sealed scoring process: `python -I -B -m transferbench.scoring.sandbox_child`, started fresh by
`transferbench.scoring.sandbox.score_pairs` for one indicator, never forked from the benchmark process.

Stage 4 (scoring). It either scores one indicator's pairs or, for `load_sealed`, loads a
`file.py:Class` spec and reports what the benchmark needs of it. Before any plugin code runs (and
before numpy is imported, while the process has one thread) it seals itself on Linux: new user,
mount, PID and network namespaces; the folders the parent names are covered by empty tmpfs (the
package's code re-exposed); every mount read-only
except the scratch folder; a fresh /proc; then a second user+mount namespace, which locks those
mounts (the kernel refuses to unmount or remount them), and every capability dropped. Then it
unpickles the task views, builds the indicator and answers on its channel fd, one JSON line per
pair. Where a step is refused it reports why on the channel and exits before running plugin code.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys

from transferbench.processes import die_with_parent

CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x00020000, 0x10000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MOUNT_ATTR_RDONLY, AT_FDCWD, AT_RECURSIVE = 0x1, -100, 0x8000
SYS_MOUNT_SETATTR = 442  # the same number on x86_64 and aarch64 (the generic syscall table)
PR_SET_PDEATHSIG, PR_CAPBSET_DROP, PR_SET_SECUREBITS, PR_SET_NO_NEW_PRIVS = 1, 24, 28, 38
# SECBIT_NOROOT | _LOCKED | SECBIT_NO_SETUID_FIXUP | _LOCKED | SECBIT_KEEP_CAPS_LOCKED: an exec as
# uid 0 of the inner namespace does not give the capabilities back
SECUREBITS = 0x01 | 0x02 | 0x04 | 0x08 | 0x20
UNSEALABLE_EXIT = 3


class SetupRefused(Exception):
    """A sealing step the kernel refused: the parent falls back to an unsealed fresh process."""


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise SetupRefused(f"{what}: {os.strerror(errno)}")


def _mount(libc, source, target, fstype, flags, data=None) -> None:
    enc = lambda s: None if s is None else s.encode()  # noqa: E731
    _check(libc.mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)),
           f"mount {target}")


def _write(path: str, text: str) -> None:
    with open(path, "w", encoding="ascii") as file:
        file.write(text)


def _enter_user_namespace(libc, flags: int, inner: int = 0) -> None:
    uid, gid = os.getuid(), os.getgid()
    _check(libc.unshare(flags), "unshare")
    _write("/proc/self/setgroups", "deny")
    _write("/proc/self/uid_map", f"{inner} {uid} 1")
    _write("/proc/self/gid_map", f"{inner} {gid} 1")


def _under(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def hide(libc, hidden: list[str], exposed: list[str]) -> None:
    """Cover each folder in `hidden` with an empty tmpfs, then bind each path of `exposed` that
    lies under one back in place (the package's code, site-packages, the plugin's file), then
    cover again the hidden folders that the re-exposed ones hold (package data inside a package)."""
    hidden = [os.path.realpath(p) for p in hidden if os.path.isdir(p)]
    exposed = sorted({os.path.realpath(p) for p in exposed if os.path.exists(p)
                      and any(_under(os.path.realpath(p), h) for h in hidden)}, key=len)
    # a path's content stays reachable after its folder is covered through an O_PATH descriptor
    handles = {path: os.open(path, os.O_PATH | os.O_CLOEXEC) for path in exposed}
    for folder in hidden:
        if any(_under(folder, other) and folder != other for other in hidden):
            continue  # already covered
        _mount(libc, "tmpfs", folder, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0755")
    for path, handle in handles.items():
        if os.path.isdir(f"/proc/self/fd/{handle}"):
            os.makedirs(path, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            open(path, "a").close()  # noqa: SIM115 -- the mount point of one file
        _mount(libc, f"/proc/self/fd/{handle}", path, None, MS_BIND | MS_REC)
        os.close(handle)
    for folder in hidden:
        if any(_under(folder, path) and folder != path for path in exposed):
            _mount(libc, "tmpfs", folder, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0755")


def read_only_everywhere(libc, scratch: str) -> None:
    """Every mount read-only (`mount_setattr`, Linux 5.12+; else one remount per mount), then the
    scratch folder bound writable onto itself and a fresh /dev/shm."""
    class MountAttr(ctypes.Structure):
        _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                    ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]

    attr = MountAttr(MOUNT_ATTR_RDONLY, 0, 0, 0)
    if libc.syscall(SYS_MOUNT_SETATTR, AT_FDCWD, b"/", AT_RECURSIVE, ctypes.byref(attr),
                    ctypes.sizeof(attr)) != 0:
        locked = {"nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC}
        with open("/proc/self/mountinfo", encoding="utf-8") as file:
            mounts = [line.split() for line in file]
        for fields in mounts:  # keep the flags the kernel locks, add read-only
            target = fields[4].encode().decode("unicode_escape")
            flags = sum(locked.get(option, 0) for option in fields[5].split(","))
            _mount(libc, None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY | flags)
    _mount(libc, scratch, scratch, None, MS_BIND)  # a bind inherits read-only: make it writable
    _mount(libc, None, scratch, None, MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NODEV)
    if os.path.isdir("/dev/shm"):
        _mount(libc, "tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "size=64m")


def drop_capabilities(libc) -> None:
    """No capability left, none regained by exec (securebits, bounding set, no_new_privs)."""
    _check(libc.prctl(PR_SET_SECUREBITS, SECUREBITS, 0, 0, 0), "securebits")
    for cap in range(64):
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            break  # past the last capability this kernel knows
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
    data = (ctypes.c_uint32 * 6)()  # effective, permitted, inheritable x 2 words, all empty
    _check(libc.capset(header, data), "capset")
    _check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")


def seal(header: dict, send) -> None:
    """Seal this process (see the module docstring); returns in the process that runs the plugin,
    PID 1 of a new PID namespace, whose end ends every process the plugin started."""
    libc = _libc()
    _enter_user_namespace(libc, CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET)
    _mount(libc, None, "/", None, MS_REC | MS_PRIVATE)
    hide(libc, header["hide"], [*header["expose"], *sys.path])
    pid = os.fork()
    if pid:  # the first process only waits: its end (killed by the parent) ends the namespace
        _, status = os.waitpid(pid, 0)
        os._exit(os.waitstatus_to_exitcode(status) & 0xFF if os.WIFEXITED(status) else 128 + os.WTERMSIG(status))
    _check(libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "pdeathsig")
    read_only_everywhere(libc, header["scratch"])
    try:  # a /proc of this namespace (mounted after the read-only pass: the next step writes to it):
        # the benchmark process and its memory are not in it
        _mount(libc, "proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    except SetupRefused as exc:
        raise SetupRefused(f"{exc} (a fresh /proc for the PID namespace)") from None
    _enter_user_namespace(libc, CLONE_NEWUSER | CLONE_NEWNS)  # locks every mount made above
    drop_capabilities(libc)


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the user's Ctrl-C is the parent's to handle
    header = json.loads(sys.stdin.buffer.readline())
    payload = sys.stdin.buffer.read()  # unpickled only once sealed: unpickling runs plugin code
    os.set_inheritable(header["channel"], False)  # no program the plugin runs gets the channel
    channel = os.fdopen(header["channel"], "wb", buffering=0)

    def send(message: dict) -> None:
        channel.write(json.dumps(message, allow_nan=False).encode() + b"\n")

    die_with_parent(header["parent"])
    ready = "unsealed"
    if header["seal"]:
        try:
            seal(header, send)
            ready = "sealed"
        except (SetupRefused, OSError) as exc:
            send({"unsealable": str(exc)})
            os._exit(UNSEALABLE_EXIT)
    os.chdir(header["scratch"])
    if "load" in header:
        _load(header, send)
    else:
        _score(header, payload, send, ready)


def _json_value(value):
    """`value` if it is a JSON value, else its repr (a parameter shown, never rebuilt from)."""
    try:
        json.dumps(value, allow_nan=False)
        return value
    except (TypeError, ValueError):
        return repr(value)


def _load(header: dict, send) -> None:
    """Load the spec `header["load"]` (`make_indicator`: the file's top level, the constructor, the
    contract check) here, in the folder the benchmark runs in (relative paths and messages as
    there), and report what the benchmark needs of it."""
    from transferbench.errors import TransferbenchError
    from transferbench.scoring.indicator import make_indicator

    try:
        os.chdir(header["cwd"])
    except OSError:
        pass
    try:
        indicator = make_indicator(header["load"])
        report = {"class": type(indicator).__name__, "name": indicator.name,
                  "requires": sorted(set(indicator.requires)), "description": indicator.description,
                  "baseline": indicator.baseline, "kind": indicator.kind,
                  "params": {k: _json_value(v) for k, v in indicator.get_params().items()},
                  "defaults": {k: _json_value(v) for k, v in type(indicator).defaults().items()}}
    except TransferbenchError as exc:
        send({"error": str(exc)})
        return
    except BaseException as exc:  # noqa: BLE001 -- plugin code ran while reading what it declares
        send({"error": f"indicator {header['load']!r} could not be loaded in the scoring process: "
                       f"{type(exc).__name__}: {exc}"})
        return
    send({"loaded": report})


def _score(header: dict, payload: bytes, send, ready: str) -> None:
    import pickle

    from transferbench.errors import TransferbenchError
    from transferbench.scoring.indicator import load_file_class, checked_score, construct_indicator

    try:
        message = pickle.loads(payload)
        spec = message["indicator"]
        if spec[0] == "file":
            _, path, class_name, params = spec
            indicator = construct_indicator(load_file_class(path, class_name), params)
        else:
            indicator = pickle.loads(spec[1])
            if type(indicator).__dict__.get("registered_name") is None:  # a registered class imported afresh:
                type(indicator).registered_name = header["name"]  # named as the benchmark knows it, not by its class
    except TransferbenchError as exc:
        send({"error": str(exc)})
        return
    except BaseException as exc:  # noqa: BLE001 -- the plugin's classes run while unpickling
        send({"error": f"indicator {header['name']!r} could not be rebuilt in the scoring process: "
                       f"{type(exc).__name__}: {exc}"})
        return
    send({"ready": ready})
    for index, (source, target) in enumerate(message["pairs"]):
        try:
            send({"pair": index, "value": checked_score(indicator, source, target)})
        except TransferbenchError as exc:
            send({"pair": index, "error": str(exc)})
            return
    send({"end": len(message["pairs"])})  # the parent needs no end of stream: a grandchild may hold the fd


if __name__ == "__main__":
    status = 0
    try:
        main()
    except BaseException:  # noqa: BLE001 -- the parent reports the missing answer
        status = 70
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except BaseException:  # noqa: BLE001
            pass
        os._exit(status)
