"""A CPU stand-in for cuda-python's runtime API (`cuda.bindings.runtime`, formerly `cuda.cudart`), for tests.

It follows cuda-python's calling convention: every function returns a tuple whose first element is a
`cudaError_t` (then the values: `cudaMalloc(n) -> (err, ptr)`), and `cudaMemcpy*` take plain integer addresses,
host ones from `ndarray.ctypes.data`. Device memory is host memory in disguise: every allocation is a bytearray
at a made-up device address, so tests can read what the code under test put on the "GPU" and check its
bookkeeping (what is live, every copy's size and direction). Unlike a real GPU, a copy that leaves its
allocation, touches freed memory or mixes up directions raises `DeviceFault` at once. Copies on a stream run
at once too, which is what CUDA does for pageable host memory (the host buffer is read or written before the
call returns).
"""

from __future__ import annotations

import bisect
import ctypes
import enum
from dataclasses import dataclass, field
from typing import Any


class cudaError_t(enum.IntEnum):  # noqa: N801 (cuda-python's names)
    cudaSuccess = 0
    cudaErrorInvalidValue = 1
    cudaErrorMemoryAllocation = 2
    cudaErrorNoDevice = 100
    cudaErrorInvalidDevice = 101
    cudaErrorInvalidResourceHandle = 400


class cudaMemcpyKind(enum.IntEnum):  # noqa: N801
    cudaMemcpyHostToHost = 0
    cudaMemcpyHostToDevice = 1
    cudaMemcpyDeviceToHost = 2
    cudaMemcpyDeviceToDevice = 3


class DeviceFault(AssertionError):
    """What a real GPU would do silently or as an illegal-address crash: reading or writing out of bounds."""


@dataclass
class cudaDeviceProp:  # noqa: N801
    name: bytes
    major: int
    minor: int
    totalGlobalMem: int  # noqa: N815


class cudaStream_t:  # noqa: N801
    """A stream handle; TensorRT takes it as an int (its address)."""

    def __init__(self, handle: int):
        self.handle = handle

    def __int__(self) -> int:
        return self.handle


@dataclass
class Copy:
    kind: cudaMemcpyKind
    nbytes: int
    stream: int | None  # None: cudaMemcpy


@dataclass
class Device:
    """The fake GPU's state: its properties and every live allocation (address -> bytes)."""

    name: str = "NVIDIA Fake GPU"
    major: int = 8
    minor: int = 7
    memory_gib: float = 16.0
    count: int = 1  # GPUs this machine reports (0: no device, every call but the count fails)
    memory: dict[int, bytearray] = field(default_factory=dict)
    freed: set[int] = field(default_factory=set)
    copies: list[Copy] = field(default_factory=list)
    mallocs: int = 0
    streams: int = 0
    syncs: int = 0
    next_address: int = 0x7F00_0000_0000

    @property
    def live(self) -> dict[int, int]:
        """Address -> bytes of every allocation not yet freed."""
        return {ptr: len(buf) for ptr, buf in self.memory.items()}

    def find(self, ptr: int, nbytes: int) -> tuple[bytearray, int]:
        """The allocation holding [ptr, ptr + nbytes) and the offset of ptr in it; a fault if there is none."""
        bases = sorted(self.memory)
        i = bisect.bisect_right(bases, ptr) - 1
        if i < 0 or ptr + nbytes > bases[i] + len(self.memory[bases[i]]):
            state = "freed" if ptr in self.freed else "never allocated or out of bounds"
            raise DeviceFault(f"device access of {nbytes} bytes at {ptr:#x}: {state}")
        return self.memory[bases[i]], ptr - bases[i]

    def read(self, ptr: int, nbytes: int) -> bytes:
        buf, offset = self.find(ptr, nbytes)
        return bytes(buf[offset:offset + nbytes])

    def write(self, ptr: int, data: bytes) -> None:
        buf, offset = self.find(ptr, len(data))
        buf[offset:offset + len(data)] = data


DEVICE = Device()  # tests replace it (see fake_gpu in test_gpu_fakes.py)
_current = {"device": 0}


def _ok(*values: Any) -> tuple[Any, ...]:
    return (cudaError_t.cudaSuccess, *values)


def _no_device() -> bool:
    return DEVICE.count <= _current["device"]


def cudaGetDeviceCount() -> tuple[Any, ...]:  # noqa: N802
    if DEVICE.count == 0:  # as the driver says it on a machine without a GPU
        return (cudaError_t.cudaErrorNoDevice, 0)
    return _ok(DEVICE.count)


def cudaSetDevice(device: int) -> tuple[Any, ...]:  # noqa: N802
    if device >= DEVICE.count:
        return (cudaError_t.cudaErrorNoDevice if DEVICE.count == 0 else cudaError_t.cudaErrorInvalidDevice,)
    _current["device"] = device
    return _ok()


def cudaGetDeviceProperties(device: int) -> tuple[Any, ...]:  # noqa: N802
    if device >= DEVICE.count:
        return (cudaError_t.cudaErrorInvalidDevice, None)
    name = DEVICE.name.encode().ljust(256, b"\0")  # a fixed-size char array, as the driver fills it
    return _ok(cudaDeviceProp(name, DEVICE.major, DEVICE.minor, int(DEVICE.memory_gib * 2**30)))


def cudaMalloc(size: int) -> tuple[Any, ...]:  # noqa: N802
    if _no_device():
        return (cudaError_t.cudaErrorNoDevice, 0)
    if size <= 0:
        return (cudaError_t.cudaErrorInvalidValue, 0)
    ptr = DEVICE.next_address
    DEVICE.next_address += (size + 255) // 256 * 256 + 256  # aligned, with a gap: overruns do not land anywhere
    DEVICE.memory[ptr] = bytearray(size)
    DEVICE.freed.discard(ptr)
    DEVICE.mallocs += 1
    return _ok(ptr)


def cudaFree(ptr: int) -> tuple[Any, ...]:  # noqa: N802
    if ptr == 0:
        return _ok()  # as CUDA: freeing NULL does nothing
    if ptr not in DEVICE.memory:
        return (cudaError_t.cudaErrorInvalidValue,)
    del DEVICE.memory[ptr]
    DEVICE.freed.add(ptr)
    return _ok()


def _copy(dst: int, src: int, count: int, kind: cudaMemcpyKind, stream: int | None) -> tuple[Any, ...]:
    dst, src = int(dst), int(src)
    if kind == cudaMemcpyKind.cudaMemcpyHostToDevice:
        DEVICE.write(dst, ctypes.string_at(src, count))
    elif kind == cudaMemcpyKind.cudaMemcpyDeviceToHost:
        ctypes.memmove(dst, DEVICE.read(src, count), count)
    elif kind == cudaMemcpyKind.cudaMemcpyDeviceToDevice:
        DEVICE.write(dst, DEVICE.read(src, count))
    else:
        return (cudaError_t.cudaErrorInvalidValue,)
    DEVICE.copies.append(Copy(kind, count, stream))
    return _ok()


def cudaMemcpy(dst: int, src: int, count: int, kind: cudaMemcpyKind) -> tuple[Any, ...]:  # noqa: N802
    return _copy(dst, src, count, kind, None)


def cudaMemcpyAsync(dst: int, src: int, count: int, kind: cudaMemcpyKind,  # noqa: N802
                    stream: cudaStream_t) -> tuple[Any, ...]:
    if not isinstance(stream, cudaStream_t):
        return (cudaError_t.cudaErrorInvalidResourceHandle,)
    return _copy(dst, src, count, kind, int(stream))


def cudaStreamCreate() -> tuple[Any, ...]:  # noqa: N802
    if _no_device():
        return (cudaError_t.cudaErrorNoDevice, None)
    DEVICE.streams += 1
    return _ok(cudaStream_t(0x5000 + DEVICE.streams))


def cudaStreamSynchronize(stream: cudaStream_t) -> tuple[Any, ...]:  # noqa: N802
    if not isinstance(stream, cudaStream_t):
        return (cudaError_t.cudaErrorInvalidResourceHandle,)
    DEVICE.syncs += 1
    return _ok()
