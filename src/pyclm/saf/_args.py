"""Reading the arguments of the ``saClm*`` functions as ctypes would hand them to the C library.

pyosaf's functions declare ``argtypes`` and pass structures with ``BYREF``; a program
written for it passes plain ints or ctypes scalars for values (``SaClmHandleT()``,
``eSaDispatchFlagsT.SA_DISPATCH_ALL``) and ctypes objects, or None for a C NULL, for
pointers.  These helpers accept the same and give the facade plain Python values:

* :func:`integer`: an int or a ctypes scalar, converted to the C type as ctypes does
  (silently truncated: ``-1`` as an ``SaClmHandleT`` is ``2**64 - 1``, a bad handle).
* :func:`target`: the object a pointer argument points at: the object itself,
  ``ctypes.pointer(obj)``, ``ctypes.byref(obj)``, or None / a NULL pointer (None).
* :func:`address`: the address a pointer argument holds (``saClmClusterNotificationFree``).

Anything else is a programming error and raises :class:`TypeError` naming the type
expected, as ctypes raises ``ArgumentError`` for pyosaf.
"""

from __future__ import annotations

import ctypes
from typing import Any, TypeVar

__all__ = ["address", "integer", "target"]

_SimpleInt = type[ctypes.c_ubyte] | type[ctypes.c_int] | type[ctypes.c_uint] | type[ctypes.c_longlong]
_SimpleInt64 = type[ctypes.c_ulonglong]
_CARG = type(ctypes.byref(ctypes.c_int()))  # ctypes' CArgObject: what byref() returns

T = TypeVar("T", bound=ctypes.Structure | ctypes.c_ulonglong)


def integer(value: object, ctype: _SimpleInt | _SimpleInt64, what: str) -> int:
    """``value`` (an int or a ctypes scalar) as the C type ``ctype`` holds it."""
    if isinstance(value, ctypes._SimpleCData):
        value = value.value
    if not isinstance(value, int):
        raise TypeError(f"{what} must be an int or a {ctype.__name__}, got {type(value).__name__}")
    converted: int = ctype(value).value
    return converted


def target(value: object, cls: type[T], what: str) -> T | None:
    """The ``cls`` instance a pointer argument points at, or None for a C NULL."""
    if value is None:
        return None
    if isinstance(value, _CARG):
        value = getattr(value, "_obj", None)
    if isinstance(value, cls):
        return value
    if isinstance(value, ctypes._Pointer) and _points_to(value, cls):
        if not value:
            return None
        contents: T = value.contents
        return contents
    raise TypeError(f"{what} must be a {cls.__name__} (or None for NULL), got {type(value).__name__}")


def address(value: object, cls: type[ctypes.Structure], what: str) -> int | None:
    """The address a pointer to ``cls`` holds: a pointer, a ``cls`` instance or array, or byref; None for NULL."""
    if value is None:
        return None
    if isinstance(value, _CARG):
        value = getattr(value, "_obj", None)
    if isinstance(value, ctypes._Pointer) and _points_to(value, cls):
        held: int | None = ctypes.cast(value, ctypes.c_void_p).value
        return held
    if isinstance(value, cls) or (isinstance(value, ctypes.Array) and _element(value) is cls):
        return ctypes.addressof(value)
    raise TypeError(f"{what} must be a pointer to {cls.__name__} (or None for NULL), got {type(value).__name__}")


def _points_to(pointer: ctypes._Pointer[Any], cls: type[Any]) -> bool:
    pointee: type[Any] = getattr(type(pointer), "_type_", object)
    return issubclass(pointee, cls)


def _element(array: ctypes.Array[Any]) -> type[Any]:
    element: type[Any] = getattr(type(array), "_type_", object)
    return element
