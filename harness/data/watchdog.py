"""A deadline for decoding: run a call in a persistent child process and give up after ``timeout`` s.

decord can loop forever inside ``get_batch`` (dmlc/decord#373: a container that over-reports its frame
count) and a decoder can segfault. Neither can be stopped from the calling thread -- a signal-based
alarm is only handled between Python bytecodes, never inside a C call -- so every decode runs in a
child process: the parent waits on a pipe with a deadline and, on a timeout or when the child dies,
kills it (``DecodeTimeout`` / ``DecoderCrash``); the next call forks a fresh one.

The child is forked (``os.fork``) from the calling process, not spawned: it inherits the imported
modules (no start-up imports, no ``sys.path`` set-up) and works inside a DataLoader worker, where
``multiprocessing`` refuses to start children of a daemonic process. It only runs the decode
functions (decord, Pillow, numpy) and dies with its parent (``PR_SET_PDEATHSIG`` on Linux, plus a
thread that watches the parent's pid). Requests and replies are pickles over two pipes; one call at
a time per worker (a worker belongs to one thread).
"""
from __future__ import annotations

import atexit
import mmap
import os
import pickle
import select
import signal
import socket
import struct
import sys
import threading
import time
import traceback
import typing as tp
import weakref

_HEADER = struct.Struct("<Q")
_REPLY = struct.Struct("<QQ")  # pickle length, number of out-of-band buffers (in the memfd that comes along)
_OOB_MIN_BYTES = 1 << 16  # smaller replies travel in-band
# Held from pipe creation until the parent has closed the child's ends: otherwise a worker forked by
# another thread in between keeps this worker's reply pipe open, and its crash never reads as EOF.
_FORK_LOCK = threading.Lock()
_LIVE: "weakref.WeakSet[DecodeWorker]" = weakref.WeakSet()


class DecodeTimeout(TimeoutError):
    """The call did not finish within its deadline; its worker was killed."""

    reason = "timeout"


class DecoderCrash(RuntimeError):
    """The worker died during the call (a segfault, an abort, out of memory...)."""

    reason = "crash"


class DecodeWorker:
    """``worker.call(fn, *args, timeout=60)`` runs ``fn(*args)`` in a child process with a deadline.

    ``fn`` (a module-level function), ``args``, the result and any exception ``fn`` raises travel as
    pickles (an exception that does not pickle comes back as ``RuntimeError`` with the same text). Returns ``fn``'s result or re-raises its exception; raises
    ``DecodeTimeout`` or ``DecoderCrash`` without waiting further for the child.
    """

    def __init__(self) -> None:
        self._pid: tp.Optional[int] = None
        self._owner = os.getpid()
        self._to_child = -1
        self._from_child: tp.Optional[socket.socket] = None
        _LIVE.add(self)

    # -- child side ----------------------------------------------------------------------------------
    @staticmethod
    def _serve(req_fd: int, rep: socket.socket, parent: int) -> tp.NoReturn:
        _die_with_parent(parent)
        code = 0
        try:
            while True:
                message = _read_message(req_fd, None)
                if message is None:
                    break
                fn, args = pickle.loads(message)
                try:
                    reply = (True, fn(*args))
                except BaseException as err:  # noqa: BLE001 -- every failure goes back to the caller
                    reply = (False, err)
                _send_reply(rep, reply)
        except BaseException:  # noqa: BLE001 -- a broken pipe: the parent is gone
            traceback.print_exc()
            code = 1
        finally:
            os._exit(code)

    # -- parent side ---------------------------------------------------------------------------------
    def _start(self) -> None:
        with _FORK_LOCK:  # a worker forked by another thread meanwhile must not inherit this one's pipe ends
            self._fork()

    def _fork(self) -> None:
        req_r, req_w = os.pipe()
        rep_parent, rep_child = socket.socketpair()  # a socket: large replies come as a memfd (SCM_RIGHTS)
        parent = os.getpid()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # child
            try:
                os.close(req_w)
                rep_parent.close()
                # Ctrl-C and SIGTERM (Slurm preempting the job's process group) are the parent's to handle:
                # a decoder dying first would count its video as a crash. The parent kills it (SIGKILL),
                # and it dies with the parent (PR_SET_PDEATHSIG).
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
                for sig in (signal.SIGSEGV, signal.SIGBUS, signal.SIGFPE, signal.SIGILL, signal.SIGABRT):
                    signal.signal(sig, signal.SIG_DFL)  # a decoder crash ends the worker: no handler, no dump
            finally:
                self._serve(req_r, rep_child, parent)
        os.close(req_r)
        rep_child.close()
        self._pid, self._to_child, self._from_child = pid, req_w, rep_parent

    def call(self, fn: tp.Callable, *args: tp.Any, timeout: float) -> tp.Any:
        if os.getpid() != self._owner:  # copied into a forked process (a DataLoader worker): not ours
            self._pid, self._owner, self._to_child, self._from_child = None, os.getpid(), -1, None
        if self._pid is None:
            self._start()
        deadline = time.monotonic() + timeout
        try:
            _write_all(self._to_child, _message((fn, args)))
            reply = _receive_reply(self._from_child, deadline)
        except _Expired:
            self.close()
            raise DecodeTimeout(f"decoding took longer than decode_timeout_s={timeout:g} s; "
                                "the decoder was stopped") from None
        except OSError:
            reply = None
        if reply is None:
            status = self.close(grace_s=1.0)
            raise DecoderCrash(f"the decoder process died ({_describe_status(status)})")
        ok, value = reply
        if ok:
            return value
        raise value

    def close(self, grace_s: float = 0.0) -> tp.Optional[int]:
        """Kill the child (if any) and return its wait status (its own, if it exits within ``grace_s``)."""
        pid, self._pid = self._pid, None
        if self._to_child >= 0:
            try:
                os.close(self._to_child)
            except OSError:
                pass
        if self._from_child is not None:
            self._from_child.close()
        self._to_child, self._from_child = -1, None
        if pid is None or os.getpid() != self._owner:
            return None
        end = time.monotonic() + grace_s
        while True:  # a crashed child: collect its own status (SIGSEGV...) rather than our SIGKILL
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                return None
            if done:
                return status
            if time.monotonic() >= end:
                break
            time.sleep(0.01)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            return os.waitpid(pid, 0)[1]
        except ChildProcessError:
            return None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 -- interpreter shutdown
            pass


_THREAD_WORKERS = threading.local()


def run_with_deadline(fn: tp.Callable, *args: tp.Any, timeout: float) -> tp.Any:
    """``fn(*args)`` in this thread's ``DecodeWorker`` (created on first use), with a deadline."""
    worker = getattr(_THREAD_WORKERS, "worker", None)
    if worker is None:
        worker = _THREAD_WORKERS.worker = DecodeWorker()
    return worker.call(fn, *args, timeout=timeout)


def close_thread_worker() -> None:
    """Stop this thread's worker now (it is restarted on the next call)."""
    worker = getattr(_THREAD_WORKERS, "worker", None)
    if worker is not None:
        worker.close()
        _THREAD_WORKERS.worker = None


@atexit.register
def _close_all() -> None:
    for worker in list(_LIVE):
        worker.close()


class _Expired(Exception):
    pass


def _message(obj: tp.Any) -> bytes:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(data)) + data


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _read_exact(fd: int, n: int, deadline: tp.Optional[float]) -> tp.Optional[bytes]:
    chunks, left = [], n
    while left:
        if deadline is not None:
            wait = deadline - time.monotonic()
            if wait <= 0 or not select.select([fd], [], [], wait)[0]:
                raise _Expired
        chunk = os.read(fd, min(left, 1 << 22))
        if not chunk:
            return None  # the other side is gone
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _send_reply(sock: socket.socket, reply: tuple) -> None:
    """Pickle ``reply``; the big buffers (decoded frames) go into a memfd passed along the socket, so
    the parent maps them instead of copying megabytes through a pipe."""
    buffers: list = []
    try:
        data = pickle.dumps(reply, protocol=5, buffer_callback=buffers.append)
    except Exception:  # noqa: BLE001 -- an unpicklable result or exception
        ok, value = reply
        err = value if not ok else TypeError(f"result of type {type(value).__name__} does not pickle")
        data, buffers = pickle.dumps((False, RuntimeError(f"{type(err).__name__}: {err}"))), []
    raws = [b.raw() for b in buffers]
    sizes = [r.nbytes for r in raws]
    if not buffers or sum(sizes) < _OOB_MIN_BYTES or not hasattr(os, "memfd_create"):
        if buffers:
            data = pickle.dumps(reply, protocol=5)
        sock.sendall(_REPLY.pack(len(data), 0) + data)
        return
    fd = os.memfd_create("harness-decode", getattr(os, "MFD_CLOEXEC", 0))
    try:
        for raw in raws:
            _write_all(fd, raw)
        socket.send_fds(sock, [_REPLY.pack(len(data), len(sizes))], [fd])
    finally:
        os.close(fd)
    sock.sendall(struct.pack(f"<{len(sizes)}Q", *sizes) + data)


def _receive_reply(sock: socket.socket, deadline: float) -> tp.Optional[tuple]:
    """The child's ``(ok, value)``, or None when it died (EOF); ``_Expired`` past ``deadline``."""
    wait = deadline - time.monotonic()
    if wait <= 0 or not select.select([sock], [], [], wait)[0]:
        raise _Expired
    head, fds, _, _ = socket.recv_fds(sock, _REPLY.size, 1)
    try:
        if not head:
            return None
        if len(head) < _REPLY.size:
            rest = _read_exact(sock.fileno(), _REPLY.size - len(head), deadline)
            if rest is None:
                return None
            head += rest
        length, count = _REPLY.unpack(head)
        sizes: tuple = ()
        if count:
            raw = _read_exact(sock.fileno(), 8 * count, deadline)
            if raw is None or not fds:
                return None
            sizes = struct.unpack(f"<{count}Q", raw)
        data = _read_exact(sock.fileno(), length, deadline)
        if data is None:
            return None
        if not count:
            return pickle.loads(data)
        view = memoryview(mmap.mmap(fds[0], sum(sizes)))  # writable, shared with nobody once the child moves on
        offsets = [0]
        for n in sizes:
            offsets.append(offsets[-1] + n)
        return pickle.loads(data, buffers=[view[a:b] for a, b in zip(offsets, offsets[1:])])
    finally:
        for fd in fds:
            os.close(fd)


def _read_message(fd: int, deadline: tp.Optional[float]) -> tp.Optional[bytes]:
    header = _read_exact(fd, _HEADER.size, deadline)
    if header is None:
        return None
    return _read_exact(fd, _HEADER.unpack(header)[0], deadline)


def _die_with_parent(parent: int) -> None:
    """SIGKILL this child when its parent dies, even while it is stuck inside a C call."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 -- not Linux: the watcher thread below still works (GIL permitting)
        pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _describe_status(status: tp.Optional[int]) -> str:
    if status is None:
        return "exit status unknown"
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        return f"killed by {name}"
    return f"exit code {os.WEXITSTATUS(status)}"
