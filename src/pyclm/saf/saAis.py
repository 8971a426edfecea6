"""SAF AIS common types, constants and helpers, under the names OpenSAF's pyosaf uses.

This module defines every name ``pyosaf.saAis`` does, but for OpenSAF's
extended-name mode (``SA_ENABLE_EXTENDED_NAMES=1``, which loads ``libSaImmOm``):
the scalar aliases are the same ctypes types (so structure layouts match the C
ABI of ``saAis.h``), ``saAis`` holds the same constants, the ``eSa*``
enumerations have the same names and values, ``SaNameT``, ``SaVersionT`` and
``BYREF`` take the same arguments, and the helpers that turn Python lists into
NULL-terminated C arrays and back (``marshalNullArray`` and the others, which
pyosaf's IMM modules and ``pyosaf.utils`` use) behave as pyosaf's.  Nothing
here loads a C library.

Python 3 differences from pyosaf (which predates Python 3): ``SaNameT``,
``SaVersionT`` and ``SaClmNodeAddressT`` accept ``str`` as well as ``bytes``
(``str`` is encoded as UTF-8), and ``str(name)`` decodes.  Fields whose C type
is ``SaInt8T`` (``char``) still read back as ``bytes``, as ctypes makes them,
and so do the strings ``unmarshalSaStringTArray`` returns.
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterable, Iterator, Mapping, Sequence
from ctypes import POINTER, Array, Structure, Union, _Pointer, _SimpleCData
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ctypes import _CArgObject, _CData

__all__ = [
    "BYREF",
    "Const",
    "EnumException",
    "Enumeration",
    "SaAisErrorT",
    "SaAnyT",
    "SaBoolT",
    "SaDispatchFlagsT",
    "SaDoubleT",
    "SaEnumT",
    "SaFloatT",
    "SaInt8T",
    "SaInt16T",
    "SaInt32T",
    "SaInt64T",
    "SaInvocationT",
    "SaLimitValueT",
    "SaLogLimitIdT",
    "SaNameT",
    "SaOffsetT",
    "SaSelectionObjectT",
    "SaServicesT",
    "SaSizeT",
    "SaStringT",
    "SaTimeT",
    "SaUint8T",
    "SaUint16T",
    "SaUint32T",
    "SaUint64T",
    "SaVersionT",
    "SaVoidPtr",
    "eSaAisErrorT",
    "eSaBoolT",
    "eSaDispatchFlagsT",
    "eSaLogLimitIdT",
    "eSaServicesT",
    "marshalNullArray",
    "marshalNullArrayVoidPtrPtr",
    "marshalSaStringTArray",
    "saAis",
    "unmarshalNullArray",
    "unmarshalSaStringTArray",
]


# --- Constants and enumerations ----------------------------------------------


class Const:
    """A namespace of named constants: a name, once bound, can't be rebound or deleted.

    ``saAis``, ``saClm`` and ``saNtf`` are instances.  The subclasses this
    package uses declare each constant's type, so a type checker knows
    ``saAis.SA_TRACK_CURRENT`` is an ``int`` and flags a misspelt name.
    """

    class ConstError(TypeError):
        """Raised on an attempt to rebind or unbind a constant."""

    def __setattr__(self, name: str, value: object) -> None:
        if name in self.__dict__:
            raise self.ConstError(f'Cannot rebind "{name}": it is a constant')
        self.__dict__[name] = value

    def __delattr__(self, name: str) -> None:
        if name in self.__dict__:
            raise self.ConstError(f'Cannot unbind "{name}": it is a constant')
        raise NameError(name)


class EnumException(Exception):
    """An ``Enumeration`` table is malformed, or code tried to change one."""


class Enumeration:
    """A table of named integer values, like a C ``enum``.

    ``enumlist`` holds names, ``(name, value)`` pairs, or both; a bare name takes
    the value after the previous entry's (the first defaults to 0), as in C.
    Read a value as an attribute (``eSaAisErrorT.SA_AIS_OK``) and turn a value
    back into its name with ``whatis``.  With ``are_unique=False`` several names
    may share a value; ``whatis`` then answers the last of them.

    ``lookup`` (name → value) and ``reverse_lookup`` (value → name) are
    read-only views: the table can't change once built.
    """

    lookup: Mapping[str, int]
    reverse_lookup: Mapping[int, str]

    def __init__(self, enumlist: Iterable[str | tuple[str, int]], are_unique: bool = True) -> None:
        lookup: dict[str, int] = {}
        reverse_lookup: dict[int, str] = {}
        value = 0
        for entry in enumlist:
            if isinstance(entry, tuple):
                if len(entry) != 2:
                    raise EnumException(f"{entry!r}: an entry is a name or a (name, value) pair")
                name, value = entry
            else:
                name = entry
            if not isinstance(name, str):
                raise EnumException(f"Enum name not a string: {name!r}")
            # bool is an int subclass, but True as an enum value is surely a mistake.
            if not isinstance(value, int) or isinstance(value, bool):
                raise EnumException(f"Enum value not an integer: {name!r} = {value!r}")
            if name in lookup:
                raise EnumException(f"Enum name not unique: {name!r}")
            if are_unique and value in reverse_lookup:
                raise EnumException(
                    f"Enum value {value!r} not unique: {name!r} repeats {reverse_lookup[value]!r}"
                    " (pass are_unique=False to allow aliases)"
                )
            lookup[name] = value
            reverse_lookup[value] = name
            value += 1
        object.__setattr__(self, "lookup", MappingProxyType(lookup))
        object.__setattr__(self, "reverse_lookup", MappingProxyType(reverse_lookup))

    def __getattr__(self, name: str) -> int:
        # Only called when normal lookup fails; read the table through __dict__ so
        # that a half-built instance (during copy or unpickling) can't recurse here.
        table: Mapping[str, int] = self.__dict__.get("lookup", {})
        try:
            return table[name]
        except KeyError:
            raise AttributeError(f"{name!r} is not a name in this enumeration") from None

    def __setattr__(self, name: str, value: object) -> None:
        raise EnumException(f"Cannot bind {name!r}: an Enumeration is fixed once built")

    def __delattr__(self, name: str) -> None:
        raise EnumException(f"Cannot unbind {name!r}: an Enumeration is fixed once built")

    def __dir__(self) -> list[str]:
        return sorted({*super().__dir__(), *self.lookup})

    def __reduce__(self) -> tuple[type[Enumeration], tuple[tuple[tuple[str, int], ...], bool]]:
        # Insertion order is kept, so rebuilding with are_unique=False gives the same
        # reverse_lookup (the last name of a shared value wins again).
        return (type(self), (tuple(self.lookup.items()), False))

    def __repr__(self) -> str:
        body = ", ".join(f"{name}={value}" for name, value in self.lookup.items())
        return f"Enumeration({body})"

    def whatis(self, value: int) -> str:
        """The name of ``value``, or ``'UNKNOWN_ENUM'`` if no name has it."""
        return self.reverse_lookup.get(value, "UNKNOWN_ENUM")


# --- Scalar types -------------------------------------------------------------
# The C typedefs of saAis.h.  SaInt8T is c_char (not c_byte) as in pyosaf, so
# SaInt8T arrays read as bytes; the size and alignment are the same.

SaInt8T = ctypes.c_char
SaInt16T = ctypes.c_short
SaInt32T = ctypes.c_int
SaInt64T = ctypes.c_longlong
SaUint8T = ctypes.c_ubyte
SaUint16T = ctypes.c_ushort
SaUint32T = ctypes.c_uint
SaUint64T = ctypes.c_ulonglong
SaEnumT = SaInt32T
SaVoidPtr = ctypes.c_void_p

SaFloatT = ctypes.c_float
SaDoubleT = ctypes.c_double
SaStringT = ctypes.c_char_p

SaTimeT = SaInt64T
SaInvocationT = SaUint64T
SaSizeT = SaUint64T
SaOffsetT = SaUint64T
SaSelectionObjectT = SaUint64T


class _SaAisConstants(Const):
    SA_TIME_END: int
    SA_TIME_BEGIN: int
    SA_TIME_UNKNOWN: int
    SA_TIME_ONE_MICROSECOND: int
    SA_TIME_ONE_MILLISECOND: int
    SA_TIME_ONE_SECOND: int
    SA_TIME_ONE_MINUTE: int
    SA_TIME_ONE_HOUR: int
    SA_TIME_ONE_DAY: int
    SA_TIME_MAX: int
    SA_MAX_NAME_LENGTH: int
    SA_TRACK_CURRENT: int
    SA_TRACK_CHANGES: int
    SA_TRACK_CHANGES_ONLY: int
    SA_TRACK_LOCAL: int
    SA_TRACK_START_STEP: int
    SA_TRACK_VALIDATE_STEP: int


saAis = _SaAisConstants()

# SaTimeT is in nanoseconds.  SA_TIME_UNKNOWN is 2**63: it does not fit a signed
# SaTimeT, and reads back as -2**63 once stored in one (as in C).
saAis.SA_TIME_END = 0x7FFFFFFFFFFFFFFF
saAis.SA_TIME_BEGIN = 0x0
saAis.SA_TIME_UNKNOWN = 0x8000000000000000
saAis.SA_TIME_ONE_MICROSECOND = 1_000
saAis.SA_TIME_ONE_MILLISECOND = 1_000_000
saAis.SA_TIME_ONE_SECOND = 1_000_000_000
saAis.SA_TIME_ONE_MINUTE = 60_000_000_000
saAis.SA_TIME_ONE_HOUR = 3_600_000_000_000
saAis.SA_TIME_ONE_DAY = 86_400_000_000_000
saAis.SA_TIME_MAX = saAis.SA_TIME_END

saAis.SA_MAX_NAME_LENGTH = 256

# Track flags (an SaUint8T bit mask).  LOCAL, START_STEP and VALIDATE_STEP are B.04.
saAis.SA_TRACK_CURRENT = 0x01
saAis.SA_TRACK_CHANGES = 0x02
saAis.SA_TRACK_CHANGES_ONLY = 0x04
saAis.SA_TRACK_LOCAL = 0x08
saAis.SA_TRACK_START_STEP = 0x10
saAis.SA_TRACK_VALIDATE_STEP = 0x20

SaBoolT = SaEnumT
eSaBoolT = Enumeration(
    (
        ("SA_FALSE", 0),
        ("SA_TRUE", 1),
    )
)

SaDispatchFlagsT = SaEnumT
eSaDispatchFlagsT = Enumeration(
    (
        ("SA_DISPATCH_ONE", 1),
        ("SA_DISPATCH_ALL", 2),
        ("SA_DISPATCH_BLOCKING", 3),
    )
)

SaAisErrorT = SaEnumT
eSaAisErrorT = Enumeration(
    (
        ("SA_AIS_OK", 1),
        ("SA_AIS_ERR_LIBRARY", 2),
        ("SA_AIS_ERR_VERSION", 3),
        ("SA_AIS_ERR_INIT", 4),
        ("SA_AIS_ERR_TIMEOUT", 5),
        ("SA_AIS_ERR_TRY_AGAIN", 6),
        ("SA_AIS_ERR_INVALID_PARAM", 7),
        ("SA_AIS_ERR_NO_MEMORY", 8),
        ("SA_AIS_ERR_BAD_HANDLE", 9),
        ("SA_AIS_ERR_BUSY", 10),
        ("SA_AIS_ERR_ACCESS", 11),
        ("SA_AIS_ERR_NOT_EXIST", 12),
        ("SA_AIS_ERR_NAME_TOO_LONG", 13),
        ("SA_AIS_ERR_EXIST", 14),
        ("SA_AIS_ERR_NO_SPACE", 15),
        ("SA_AIS_ERR_INTERRUPT", 16),
        ("SA_AIS_ERR_NAME_NOT_FOUND", 17),
        ("SA_AIS_ERR_NO_RESOURCES", 18),
        ("SA_AIS_ERR_NOT_SUPPORTED", 19),
        ("SA_AIS_ERR_BAD_OPERATION", 20),
        ("SA_AIS_ERR_FAILED_OPERATION", 21),
        ("SA_AIS_ERR_MESSAGE_ERROR", 22),
        ("SA_AIS_ERR_QUEUE_FULL", 23),
        ("SA_AIS_ERR_QUEUE_NOT_AVAILABLE", 24),
        ("SA_AIS_ERR_BAD_FLAGS", 25),
        ("SA_AIS_ERR_TOO_BIG", 26),
        ("SA_AIS_ERR_NO_SECTIONS", 27),
        ("SA_AIS_ERR_NO_OP", 28),
        ("SA_AIS_ERR_REPAIR_PENDING", 29),
        ("SA_AIS_ERR_NO_BINDINGS", 30),
        ("SA_AIS_ERR_UNAVAILABLE", 31),
        ("SA_AIS_ERR_CAMPAIGN_ERROR_DETECTED", 32),
        ("SA_AIS_ERR_CAMPAIGN_PROC_FAILED", 33),
        ("SA_AIS_ERR_CAMPAIGN_CANCELED", 34),
        ("SA_AIS_ERR_CAMPAIGN_FAILED", 35),
        ("SA_AIS_ERR_CAMPAIGN_SUSPENDED", 36),
        ("SA_AIS_ERR_CAMPAIGN_SUSPENDING", 37),
        ("SA_AIS_ERR_ACCESS_DENIED", 38),
        ("SA_AIS_ERR_NOT_READY", 39),
        ("SA_AIS_ERR_DEPLOYMENT", 40),
    )
)

SaServicesT = SaEnumT
eSaServicesT = Enumeration(
    (
        ("SA_SVC_HPI", 1),
        ("SA_SVC_AMF", 2),
        ("SA_SVC_CLM", 3),
        ("SA_SVC_CKPT", 4),
        ("SA_SVC_EVT", 5),
        ("SA_SVC_MSG", 6),
        ("SA_SVC_LCK", 7),
        ("SA_SVC_IMMS", 8),
        # pyosaf spells this one SA_SCV_LOG; keep that spelling for its programs and
        # add the header's, listed last so that whatis(9) answers the right one.
        ("SA_SCV_LOG", 9),
        ("SA_SVC_LOG", 9),
        ("SA_SVC_NTF", 10),
        ("SA_SVC_NAM", 11),
        ("SA_SVC_TMR", 12),
        ("SA_SVC_SMF", 13),
        ("SA_SVC_SEC", 14),
        ("SA_SVC_PLM", 15),
    ),
    are_unique=False,
)

SaLogLimitIdT = SaEnumT
eSaLogLimitIdT = Enumeration((("SA_LOG_MAX_NUM_CLUSTER_APP_LOG_STREAMS_ID", 1),))


# --- Structures ---------------------------------------------------------------


def _encode(text: str | bytes, what: str, limit: int) -> bytes:
    raw = text.encode("utf-8") if isinstance(text, str) else bytes(text)
    if len(raw) > limit:
        raise ValueError(f"{what} holds at most {limit} bytes, got {len(raw)}: shorten it")
    return raw


def _field_offset(struct: type[Structure], field: str) -> int:
    # The class attribute of a ctypes field is its descriptor (offset, size); the
    # stubs can't see through the annotations we declare for instances, hence getattr.
    offset: int = getattr(struct, field).offset
    return offset


def _store_bytes(struct: Structure, field: str, raw: bytes) -> None:
    # ctypes stores into a char array field only up to the first NUL; SAF counts
    # bytes by the length field, so copy them all.
    ctypes.memmove(ctypes.addressof(struct) + _field_offset(type(struct), field), raw, len(raw))


def _load_bytes(struct: Structure, field: str, length: int, limit: int) -> bytes:
    return ctypes.string_at(ctypes.addressof(struct) + _field_offset(type(struct), field), min(length, limit))


class SaAnyT(Structure):
    """An arbitrary run of octets: ``bufferSize`` bytes at ``bufferAddr``.

    The memory behind ``bufferAddr`` must be writable and outlive this structure
    (for example a ``ctypes.create_string_buffer``).
    """

    bufferSize: int
    bufferAddr: _Pointer[ctypes.c_char]

    _fields_ = (
        ("bufferSize", SaSizeT),
        ("bufferAddr", POINTER(SaInt8T)),
    )


class SaNameT(Structure):
    """A name (an LDAP DN for most SAF objects): ``length`` significant bytes of ``value``.

    ``SaNameT('safNode=PL-3,safCluster=myClmCluster')``; ``str(name)`` gives the
    name back.  ``value`` reads as ``bytes`` up to the first NUL; ``length`` is what
    counts.  A name longer than ``SA_MAX_NAME_LENGTH`` (256) bytes raises
    ``ValueError``: the extended-name mode of OpenSAF is not supported.
    """

    length: int
    value: bytes

    _fields_ = (
        ("length", SaUint16T),
        ("value", SaInt8T * saAis.SA_MAX_NAME_LENGTH),
    )

    def __init__(self, name: str | bytes = "") -> None:
        raw = _encode(name, "SaNameT", saAis.SA_MAX_NAME_LENGTH)
        super().__init__(len(raw))
        _store_bytes(self, "value", raw)

    def __str__(self) -> str:
        return _load_bytes(self, "value", self.length, saAis.SA_MAX_NAME_LENGTH).decode("utf-8", errors="replace")

    def __repr__(self) -> str:
        return f"SaNameT({str(self)!r})"


class SaVersionT(Structure):
    """An interface version: ``SaVersionT('B', 4, 1)`` is CLM B.04.01.

    ``releaseCode`` may be given as a one-letter ``str``, one ``bytes`` or its
    code; it reads back as one ``bytes`` (``b'B'``).  The initialize calls
    overwrite the three fields with the version actually granted.
    """

    releaseCode: bytes
    majorVersion: int
    minorVersion: int

    _fields_ = (
        ("releaseCode", SaInt8T),
        ("majorVersion", SaUint8T),
        ("minorVersion", SaUint8T),
    )

    def __init__(self, releaseCode: str | bytes | int = b"\0", majorVersion: int = 0, minorVersion: int = 0) -> None:
        code = releaseCode.encode("ascii") if isinstance(releaseCode, str) else releaseCode
        super().__init__(code, majorVersion, minorVersion)

    def __repr__(self) -> str:
        return f"SaVersionT({self.releaseCode.decode('latin-1')!r}, {self.majorVersion}, {self.minorVersion})"


class SaLimitValueT(Union):
    """The value of an implementation limit; which member is meaningful depends on the limit."""

    int64Value: int
    uint64Value: int
    timeValue: int
    floatValue: float
    doubleValue: float

    _fields_ = (
        ("int64Value", SaInt64T),
        ("uint64Value", SaUint64T),
        ("timeValue", SaTimeT),
        ("floatValue", SaFloatT),
        ("doubleValue", SaDoubleT),
    )


def BYREF(data: _CData | None) -> _CArgObject | None:
    """``ctypes.byref(data)``, except that ``None`` stays ``None`` (a C NULL pointer)."""
    return None if data is None else ctypes.byref(data)


# --- NULL-terminated arrays -----------------------------------------------------
# SAF passes lists as C arrays ended by a NULL entry: of strings (SaStringT *), or of
# pointers to values (SaImmAttrValuesT_2 **, ...).  pyosaf's IMM modules build them with
# these helpers, and pyosaf.utils reads IMM's error strings back with unmarshalNullArray.

_CTYPES_OBJECT = (_SimpleCData, Structure, Union, Array, _Pointer)


def _c_string(item: object, index: int) -> bytes:
    if isinstance(item, SaStringT):
        item = item.value
    if isinstance(item, str):
        item = item.encode("utf-8")
    if not isinstance(item, bytes):
        raise TypeError(f"item {index} must be bytes, str or an SaStringT, got {type(item).__name__}")
    return item


def marshalSaStringTArray(plist: Sequence[bytes | str | SaStringT] | None) -> Array[SaStringT] | None:
    """A list of strings as a NULL-terminated C array of ``SaStringT`` (``char *``), as pyosaf's.

    None gives None (a C NULL).  An empty list gives an array holding only the NULL.  Each
    item is ``bytes``, ``str`` (encoded as UTF-8) or an ``SaStringT``; the array keeps a
    copy of every string alive.  A NULL item (``SaStringT()``) raises ``ValueError``: in C
    it would end the array early.
    """
    if plist is None:
        return None
    array = (SaStringT * (len(plist) + 1))()
    for index, item in enumerate(plist):
        if isinstance(item, SaStringT) and item.value is None:
            raise ValueError(f"item {index} is a NULL SaStringT, which would end the array there: leave it out")
        array[index] = _c_string(item, index)
    return array


def marshalNullArray(plist: Sequence[Any] | None, type_name: type[Any] = SaVoidPtr) -> Array[Any] | None:
    """A list as a NULL-terminated C array, as pyosaf's: of pointers to the items, or of strings.

    None gives None (a C NULL); an empty list, an array of one NULL ``type_name``.  A list
    of strings (``SaStringT``, ``bytes``, ``str``) gives :func:`marshalSaStringTArray`'s
    array.  A list of ctypes objects of one type ``X`` (``SaImmAttrValuesT_2(...)``, ...)
    gives an array of ``POINTER(X)`` pointing at each, then NULL; the array keeps the
    items alive, and writes through it reach them.  Anything else raises ``TypeError``.
    """
    if plist is None:
        return None
    if not plist:
        empty: Array[Any] = (type_name * 1)()
        return empty
    first = plist[0]
    if isinstance(first, SaStringT | bytes | str):
        return marshalSaStringTArray(plist)
    if not isinstance(first, _CTYPES_OBJECT):
        raise TypeError(
            f"marshalNullArray takes ctypes objects or strings, got {type(first).__name__}:"
            " wrap each value in its SAF type (SaUint32T(5), SaNameT('...'))"
        )
    item_type = type(first)
    array = (POINTER(item_type) * (len(plist) + 1))()
    for index, item in enumerate(plist):
        if type(item) is not item_type:
            raise TypeError(
                f"item {index} is a {type(item).__name__}, item 0 a {item_type.__name__}: one type per array"
            )
        array[index] = ctypes.pointer(item)
    return array


def marshalNullArrayVoidPtrPtr(plist: Sequence[Any] | None) -> _Pointer[ctypes.c_void_p]:
    """:func:`marshalNullArray` of ``plist``, cast to ``void *`` and passed by pointer (``void **``), as pyosaf's.

    The result keeps the array (and the items) alive.  None gives a pointer to a NULL.
    """
    array = marshalNullArray(plist)
    return ctypes.pointer(SaVoidPtr() if array is None else ctypes.cast(array, SaVoidPtr))


def _up_to_null(c_array: Any, is_null: Any) -> Iterator[Any]:
    """The items of ``c_array`` before the first for which ``is_null`` is true.

    An array (or a Python sequence) is read at most to its end; a pointer to the first
    item, as C returns lists, is read until the NULL.
    """
    bound = None if isinstance(c_array, _Pointer) else len(c_array)
    index = 0
    while bound is None or index < bound:
        item = c_array[index]
        if is_null(item):
            return
        yield item
        index += 1


def _holds_strings(c_array: Any) -> bool:
    item_type = getattr(type(c_array), "_type_", None)
    if isinstance(item_type, type):
        return issubclass(item_type, SaStringT)
    return isinstance(c_array[0], bytes | str)


def unmarshalSaStringTArray(c_array: Any) -> list[bytes]:
    """The strings of a NULL-terminated ``SaStringT`` array (or a pointer to its first item), as pyosaf's.

    Read up to the first NULL, as ``bytes``; an empty string does not end the list.  A
    NULL or empty ``c_array`` gives ``[]``.
    """
    if not c_array:
        return []
    return list(_up_to_null(c_array, lambda item: item is None))


def unmarshalNullArray(c_array: Any) -> list[Any]:
    """The items of a NULL-terminated C array (or a pointer to its first item), as pyosaf's.

    An array of strings gives :func:`unmarshalSaStringTArray`'s list.  An array of
    pointers gives what each points at (``ptr[0]``: an int for a scalar, the structure
    itself for a structure), up to the first NULL.  A NULL or empty ``c_array`` gives
    ``[]``.  It reads what :func:`marshalNullArray` builds.
    """
    if not c_array:
        return []
    if _holds_strings(c_array):
        return unmarshalSaStringTArray(c_array)
    return [each[0] for each in _up_to_null(c_array, lambda item: not item)]
