"""The pyosaf-compatible SAF types: names, values, ctypes layouts, constructors, callbacks.

The expected values come from the SAF CLM reference tables (docs reference, §2), not
from the modules under test; the expected layouts are the C layouts of saAis.h and
saClm.h on an LP64 platform, worked out by hand from the C alignment rules.
"""

from __future__ import annotations

import copy
import ctypes
import gc
import pickle
import subprocess
import sys
from ctypes import CFUNCTYPE, POINTER, Structure, pointer
from typing import Any

import pytest

import pyclm.saf
from pyclm.saf import saAis, saClm, saNtf
from pyclm.saf.saAis import (
    BYREF,
    Const,
    Enumeration,
    EnumException,
    SaNameT,
    SaVersionT,
    eSaAisErrorT,
    eSaBoolT,
    eSaDispatchFlagsT,
    eSaServicesT,
)

LP64 = ctypes.sizeof(ctypes.c_void_p) == 8 and ctypes.alignment(ctypes.c_longlong) == 8

# --- Public names ---------------------------------------------------------------------

#: Every name pyosaf's saAis defines for itself (its ctypes imports and the extended-name
#: mode's library handle and SaConstStringT are left out on purpose).
PYOSAF_SAAIS_NAMES = {
    "marshalNullArray",
    "marshalSaStringTArray",
    "unmarshalNullArray",
    "unmarshalSaStringTArray",
    "marshalNullArrayVoidPtrPtr",
    "SaInt8T",
    "SaInt16T",
    "SaInt32T",
    "SaInt64T",
    "SaUint8T",
    "SaUint16T",
    "SaUint32T",
    "SaUint64T",
    "SaEnumT",
    "SaVoidPtr",
    "SaFloatT",
    "SaDoubleT",
    "SaStringT",
    "SaTimeT",
    "SaInvocationT",
    "SaSizeT",
    "SaOffsetT",
    "SaSelectionObjectT",
    "saAis",
    "SaBoolT",
    "eSaBoolT",
    "SaDispatchFlagsT",
    "eSaDispatchFlagsT",
    "SaAisErrorT",
    "eSaAisErrorT",
    "SaServicesT",
    "eSaServicesT",
    "SaLogLimitIdT",
    "eSaLogLimitIdT",
    "SaAnyT",
    "SaNameT",
    "SaVersionT",
    "SaLimitValueT",
    "BYREF",
    "Enumeration",
    "Const",
}

#: Every name pyosaf's saClm defines (its functions excepted: wave 2 adds them).
PYOSAF_SACLM_OWN_NAMES = {
    "SaClmHandleT",
    "SaClmNodeIdT",
    "saClm",
    "SaClmNodeAddressFamilyT",
    "eSaClmNodeAddressFamilyT",
    "SaClmClusterChangesT",
    "eSaClmClusterChangesT",
    "SaClmStateT",
    "eSaClmStateT",
    "SaClmAdminOperationIdT",
    "eSaClmAdminOperationIdT",
    "SaClmAdminStateT",
    "eSaClmAdminStateT",
    "SaClmAdditionalInfoIdT",
    "eSaClmAdditionalInfoIdT",
    "SaClmAdditionalInfoIdT_4",
    "eSaClmAdditionalInfoIdT_4",
    "SaClmNodeAddressT",
    "SaClmChangeStepT",
    "eSaClmChangeStepT",
    "SaClmResponseT",
    "eSaClmResponseT",
    "SaClmNotificationMinorIdT",
    "eSaClmNotificationMinorIdT",
    "SaClmClusterNodeT",
    "SaClmClusterNotificationT",
    "SaClmClusterNotificationBufferT",
    "SaClmClusterNodeT_4",
    "SaClmClusterNotificationT_4",
    "SaClmClusterNotificationBufferT_4",
    "SaClmClusterTrackCallbackT",
    "SaClmClusterNodeGetCallbackT",
    "SaClmCallbacksT",
    "SaClmClusterNodeEvictionCallbackT",
    "SaClmCallbacksT_3",
    "SaClmClusterNodeGetCallbackT_4",
    "SaClmClusterTrackCallbackT_4",
    "SaClmCallbacksT_4",
}

#: The functions pyosaf's saClm defines (saClmInitialize_3 among them: B.03.01, refused).
PYOSAF_SACLM_FUNCTIONS = {
    "saClmInitialize",
    "saClmInitialize_3",
    "saClmInitialize_4",
    "saClmSelectionObjectGet",
    "saClmDispatch",
    "saClmFinalize",
    "saClmClusterTrack",
    "saClmClusterNodeGet",
    "saClmClusterNotificationFree",
    "saClmClusterTrack_4",
    "saClmClusterTrackStop",
    "saClmClusterNotificationFree_4",
    "saClmClusterNodeGet_4",
    "saClmClusterNodeGetAsync",
    "saClmResponse_4",
}

#: What OpenSAF's pyosaf.utils and pyosaf.utils.clm take from saAis and saClm (at import,
#: or when called), so that they run on pyclm.saf aliased as pyosaf (docs/saf.md).
PYOSAF_UTILS_NAMES = {
    saAis: {"eSaAisErrorT", "SaStringT", "unmarshalNullArray", "saAis", "SaVersionT", "eSaDispatchFlagsT"},
    saClm: PYOSAF_SACLM_FUNCTIONS
    | {
        "SaClmCallbacksT_4",
        "SaClmClusterNodeGetCallbackT_4",
        "SaClmClusterNodeT_4",
        "SaClmClusterNotificationBufferT_4",
        "SaClmClusterTrackCallbackT_4",
        "SaClmHandleT",
        "SaSelectionObjectT",
    },
}

#: The names pyosaf's saClm imports from saAis, which pyosaf programs reach through saClm
#: (pyosaf's own CLM utilities do ``saClm.SaSelectionObjectT()``).
PYOSAF_SACLM_IMPORTED_NAMES = {
    "SaUint64T",
    "SaUint32T",
    "Const",
    "SaEnumT",
    "Enumeration",
    "SaBoolT",
    "SaTimeT",
    "SaNameT",
    "SaAisErrorT",
    "SaInvocationT",
    "BYREF",
    "SaVersionT",
    "SaSelectionObjectT",
    "SaInt8T",
    "SaDispatchFlagsT",
    "SaUint8T",
    "SaUint16T",
}


def test_package_exports_the_three_modules() -> None:
    assert {"saAis", "saClm", "saNtf"} <= set(pyclm.saf.__all__)
    assert all(hasattr(pyclm.saf, name) for name in pyclm.saf.__all__)
    assert pyclm.saf.saAis is saAis
    assert pyclm.saf.saClm is saClm
    assert pyclm.saf.saNtf is saNtf
    assert saAis.__name__ == "pyclm.saf.saAis"


@pytest.mark.parametrize(
    ("module", "expected"),
    [
        (saAis, PYOSAF_SAAIS_NAMES),
        (saClm, PYOSAF_SACLM_OWN_NAMES | PYOSAF_SACLM_FUNCTIONS | PYOSAF_SACLM_IMPORTED_NAMES | {"saNtf"}),
        (saNtf, {"SaNtfIdentifierT", "SaNtfCorrelationIdsT", "saNtf"}),
    ],
)
def test_every_pyosaf_name_is_public(module: Any, expected: set[str]) -> None:
    assert expected <= set(module.__all__), sorted(expected - set(module.__all__))
    for name in module.__all__:
        assert hasattr(module, name), name


@pytest.mark.parametrize("module", [saAis, saClm], ids=["saAis", "saClm"])
def test_every_name_pyosaf_utils_uses_is_there(module: Any) -> None:
    missing = sorted(name for name in PYOSAF_UTILS_NAMES[module] if not hasattr(module, name))
    assert not missing


def test_saclm_reexports_are_the_saais_objects() -> None:
    for name in PYOSAF_SACLM_IMPORTED_NAMES:
        assert getattr(saClm, name) is getattr(saAis, name), name
    assert saClm.saNtf is saNtf


def test_no_c_library_is_loaded() -> None:
    # pyosaf loads libSaClm.so.0 at import; pyclm.saf must not load anything.
    program = (
        "import ctypes, pyclm\n"
        "loaded = []\n"
        "real_init = ctypes.CDLL.__init__\n"
        "def spy(self, name, *a, **k):\n"
        "    loaded.append(name)\n"
        "    real_init(self, name, *a, **k)\n"
        "ctypes.CDLL.__init__ = spy\n"
        "from pyclm.saf import saAis, saClm, saNtf\n"
        "print(repr(loaded))\n"
    )
    out = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    assert not hasattr(saClm, "clmdll")


# --- Scalars and constants ------------------------------------------------------------


@pytest.mark.parametrize(
    ("ctype", "size", "signed"),
    [
        (saAis.SaInt16T, 2, True),
        (saAis.SaInt32T, 4, True),
        (saAis.SaInt64T, 8, True),
        (saAis.SaUint8T, 1, False),
        (saAis.SaUint16T, 2, False),
        (saAis.SaUint32T, 4, False),
        (saAis.SaUint64T, 8, False),
        (saAis.SaEnumT, 4, True),
        (saAis.SaBoolT, 4, True),
        (saAis.SaAisErrorT, 4, True),
        (saAis.SaDispatchFlagsT, 4, True),
        (saAis.SaTimeT, 8, True),
        (saAis.SaInvocationT, 8, False),
        (saAis.SaSizeT, 8, False),
        (saAis.SaOffsetT, 8, False),
        (saAis.SaSelectionObjectT, 8, False),
        (saClm.SaClmHandleT, 8, False),
        (saClm.SaClmNodeIdT, 4, False),
        (saClm.SaClmChangeStepT, 4, True),
        (saNtf.SaNtfIdentifierT, 8, False),
    ],
)
def test_scalar_sizes_and_signedness(ctype: Any, size: int, signed: bool) -> None:
    assert ctypes.sizeof(ctype) == size
    assert (ctype(-1).value < 0) is signed


def test_sa_int8_is_a_char_like_pyosaf() -> None:
    # pyosaf maps SaInt8T to c_char, so SaInt8T arrays (names, addresses) read as bytes.
    assert ctypes.sizeof(saAis.SaInt8T) == 1
    assert saAis.SaInt8T(b"B").value == b"B"


def test_time_constants() -> None:
    c = saAis.saAis
    assert c.SA_TIME_END == 0x7FFFFFFFFFFFFFFF
    assert c.SA_TIME_MAX == c.SA_TIME_END
    assert c.SA_TIME_BEGIN == 0
    assert c.SA_TIME_UNKNOWN == 0x8000000000000000
    assert c.SA_TIME_ONE_MICROSECOND == 10**3
    assert c.SA_TIME_ONE_MILLISECOND == 10**6
    assert c.SA_TIME_ONE_SECOND == 10**9
    assert c.SA_TIME_ONE_MINUTE == 60 * 10**9
    assert c.SA_TIME_ONE_HOUR == 3600 * 10**9
    assert c.SA_TIME_ONE_DAY == 86400 * 10**9
    assert saAis.SaTimeT(c.SA_TIME_END).value == 2**63 - 1


def test_name_and_track_constants() -> None:
    c = saAis.saAis
    assert c.SA_MAX_NAME_LENGTH == 256
    assert (c.SA_TRACK_CURRENT, c.SA_TRACK_CHANGES, c.SA_TRACK_CHANGES_ONLY) == (0x01, 0x02, 0x04)
    assert (c.SA_TRACK_LOCAL, c.SA_TRACK_START_STEP, c.SA_TRACK_VALIDATE_STEP) == (0x08, 0x10, 0x20)


def test_clm_and_ntf_constants() -> None:
    assert saClm.saClm.SA_CLM_LOCAL_NODE_ID == 0xFFFFFFFF
    assert saClm.saClm.SA_CLM_MAX_ADDRESS_LENGTH == 64
    assert saNtf.saNtf.SA_NTF_IDENTIFIER_UNUSED == 0


@pytest.mark.parametrize("constants", [saAis.saAis, saClm.saClm, saNtf.saNtf])
def test_every_declared_constant_is_bound(constants: Const) -> None:
    # The constant namespaces declare each name for type checkers; each must also exist.
    declared = type(constants).__annotations__
    assert declared
    for name in declared:
        assert isinstance(getattr(constants, name), int), name
    assert set(vars(constants)) == set(declared)


def test_constants_cannot_be_rebound_or_unbound() -> None:
    with pytest.raises(Const.ConstError, match="SA_TRACK_CURRENT"):
        saAis.saAis.SA_TRACK_CURRENT = 7
    with pytest.raises(TypeError):
        saClm.saClm.SA_CLM_LOCAL_NODE_ID = 0
    with pytest.raises(Const.ConstError):
        del saAis.saAis.SA_TIME_END
    assert saAis.saAis.SA_TRACK_CURRENT == 1
    assert saAis.saAis.SA_TIME_END == 0x7FFFFFFFFFFFFFFF


def test_a_new_const_binds_each_name_once() -> None:
    ns = Const()
    ns.ANSWER = 42  # an undeclared constant, as a pyosaf program may add
    assert vars(ns) == {"ANSWER": 42}
    with pytest.raises(Const.ConstError):
        ns.ANSWER = 43
    with pytest.raises(NameError):
        del ns.QUESTION  # type: ignore[attr-defined]


# --- Enumerations against the reference tables ----------------------------------------

AIS_ERRORS = {
    1: "SA_AIS_OK",
    2: "SA_AIS_ERR_LIBRARY",
    3: "SA_AIS_ERR_VERSION",
    4: "SA_AIS_ERR_INIT",
    5: "SA_AIS_ERR_TIMEOUT",
    6: "SA_AIS_ERR_TRY_AGAIN",
    7: "SA_AIS_ERR_INVALID_PARAM",
    8: "SA_AIS_ERR_NO_MEMORY",
    9: "SA_AIS_ERR_BAD_HANDLE",
    10: "SA_AIS_ERR_BUSY",
    11: "SA_AIS_ERR_ACCESS",
    12: "SA_AIS_ERR_NOT_EXIST",
    13: "SA_AIS_ERR_NAME_TOO_LONG",
    14: "SA_AIS_ERR_EXIST",
    15: "SA_AIS_ERR_NO_SPACE",
    16: "SA_AIS_ERR_INTERRUPT",
    17: "SA_AIS_ERR_NAME_NOT_FOUND",
    18: "SA_AIS_ERR_NO_RESOURCES",
    19: "SA_AIS_ERR_NOT_SUPPORTED",
    20: "SA_AIS_ERR_BAD_OPERATION",
    21: "SA_AIS_ERR_FAILED_OPERATION",
    22: "SA_AIS_ERR_MESSAGE_ERROR",
    23: "SA_AIS_ERR_QUEUE_FULL",
    24: "SA_AIS_ERR_QUEUE_NOT_AVAILABLE",
    25: "SA_AIS_ERR_BAD_FLAGS",
    26: "SA_AIS_ERR_TOO_BIG",
    27: "SA_AIS_ERR_NO_SECTIONS",
    28: "SA_AIS_ERR_NO_OP",
    29: "SA_AIS_ERR_REPAIR_PENDING",
    30: "SA_AIS_ERR_NO_BINDINGS",
    31: "SA_AIS_ERR_UNAVAILABLE",
    32: "SA_AIS_ERR_CAMPAIGN_ERROR_DETECTED",
    33: "SA_AIS_ERR_CAMPAIGN_PROC_FAILED",
    34: "SA_AIS_ERR_CAMPAIGN_CANCELED",
    35: "SA_AIS_ERR_CAMPAIGN_FAILED",
    36: "SA_AIS_ERR_CAMPAIGN_SUSPENDED",
    37: "SA_AIS_ERR_CAMPAIGN_SUSPENDING",
    38: "SA_AIS_ERR_ACCESS_DENIED",
    39: "SA_AIS_ERR_NOT_READY",
    40: "SA_AIS_ERR_DEPLOYMENT",
}


def test_all_forty_ais_error_codes() -> None:
    assert len(AIS_ERRORS) == 40
    assert dict(eSaAisErrorT.lookup) == {name: value for value, name in AIS_ERRORS.items()}
    assert dict(eSaAisErrorT.reverse_lookup) == AIS_ERRORS
    assert eSaAisErrorT.SA_AIS_OK == 1
    assert eSaAisErrorT.SA_AIS_ERR_BAD_HANDLE == 9
    assert eSaAisErrorT.SA_AIS_ERR_UNAVAILABLE == 31
    assert eSaAisErrorT.whatis(12) == "SA_AIS_ERR_NOT_EXIST"


@pytest.mark.parametrize(
    ("enum", "expected"),
    [
        (eSaBoolT, {"SA_FALSE": 0, "SA_TRUE": 1}),
        (eSaDispatchFlagsT, {"SA_DISPATCH_ONE": 1, "SA_DISPATCH_ALL": 2, "SA_DISPATCH_BLOCKING": 3}),
        (saClm.eSaClmNodeAddressFamilyT, {"SA_CLM_AF_INET": 1, "SA_CLM_AF_INET6": 2}),
        (
            saClm.eSaClmClusterChangesT,
            {
                "SA_CLM_NODE_NO_CHANGE": 1,
                "SA_CLM_NODE_JOINED": 2,
                "SA_CLM_NODE_LEFT": 3,
                "SA_CLM_NODE_RECONFIGURED": 4,
                "SA_CLM_NODE_UNLOCK": 5,
                "SA_CLM_NODE_SHUTDOWN": 6,
            },
        ),
        (
            saClm.eSaClmChangeStepT,
            {
                "SA_CLM_CHANGE_VALIDATE": 1,
                "SA_CLM_CHANGE_START": 2,
                "SA_CLM_CHANGE_ABORTED": 3,
                "SA_CLM_CHANGE_COMPLETED": 4,
            },
        ),
        (
            saClm.eSaClmResponseT,
            {
                "SA_CLM_CALLBACK_RESPONSE_OK": 1,
                "SA_CLM_CALLBACK_RESPONSE_REJECTED": 2,
                "SA_CLM_CALLBACK_RESPONSE_ERROR": 3,
            },
        ),
        (saClm.eSaClmStateT, {"SA_CLM_CLUSTER_CHANGE_STATUS": 1, "SA_CLM_ADMIN_STATE": 2}),
        (
            saClm.eSaClmAdminOperationIdT,
            {
                "SA_CLM_ADMIN_UNLOCK": 1,
                "SA_CLM_ADMIN_LOCK": 2,
                "SA_CLM_ADMIN_SHUTDOWN": 3,
                "SA_CLM_ADMIN_RESET": 4,
                "SA_CLM_ADMIN_ACTION": 5,
            },
        ),
        (
            saClm.eSaClmAdminStateT,
            {"SA_CLM_ADMIN_UNLOCKED": 1, "SA_CLM_ADMIN_LOCKED": 2, "SA_CLM_ADMIN_SHUTTING_DOWN": 3},
        ),
        (saClm.eSaClmAdditionalInfoIdT, {"SA_CLM_NODE_NAME": 1}),
        (saClm.eSaClmAdditionalInfoIdT_4, {"SA_CLM_ROOT_CAUSE_ENTITY": 1}),
        (
            saClm.eSaClmNotificationMinorIdT,
            {
                "SA_CLM_NTFID_NODE_JOIN": 0x65,
                "SA_CLM_NTFID_NODE_LEAVE": 0x66,
                "SA_CLM_NTFID_NODE_RECONFIG": 0x67,
                "SA_CLM_NTFID_NODE_ADMIN_STATE": 0x68,
            },
        ),
        (saAis.eSaLogLimitIdT, {"SA_LOG_MAX_NUM_CLUSTER_APP_LOG_STREAMS_ID": 1}),
    ],
)
def test_enumeration_values(enum: Enumeration, expected: dict[str, int]) -> None:
    assert dict(enum.lookup) == expected
    for name, value in expected.items():
        assert getattr(enum, name) == value
        assert enum.whatis(value) == name


def test_services_keep_pyosafs_spelling_and_the_headers() -> None:
    assert eSaServicesT.SA_SCV_LOG == 9  # pyosaf's spelling
    assert eSaServicesT.SA_SVC_LOG == 9  # saAis.h's
    assert eSaServicesT.whatis(9) == "SA_SVC_LOG"
    assert eSaServicesT.SA_SVC_CLM == 3
    assert eSaServicesT.SA_SVC_PLM == 15


# --- The Enumeration and Const classes --------------------------------------------------


def test_enumeration_attribute_and_reverse_lookup() -> None:
    colours = Enumeration((("RED", 5), "GREEN", "BLUE", ("BLACK", 0), "WHITE"))
    assert (colours.RED, colours.GREEN, colours.BLUE, colours.BLACK, colours.WHITE) == (5, 6, 7, 0, 1)
    assert colours.whatis(6) == "GREEN"
    assert colours.whatis(99) == "UNKNOWN_ENUM"
    assert dict(colours.lookup) == {"RED": 5, "GREEN": 6, "BLUE": 7, "BLACK": 0, "WHITE": 1}
    assert dict(colours.reverse_lookup) == {5: "RED", 6: "GREEN", 7: "BLUE", 0: "BLACK", 1: "WHITE"}
    assert "GREEN" in dir(colours)
    with pytest.raises(AttributeError, match="PURPLE"):
        _ = colours.PURPLE


def test_enumeration_bare_names_count_from_zero() -> None:
    assert dict(Enumeration(("A", "B")).lookup) == {"A": 0, "B": 1}


@pytest.mark.parametrize(
    "table",
    [
        (("A", 1), ("A", 2)),  # a name twice
        (("A", 1), ("B", 1)),  # a value twice
        (("A", 1, 2),),  # not a pair
        ((1, 1),),  # a name that isn't a string
        (("A", "1"),),  # a value that isn't an int
        (("A", True),),  # nor a bool
    ],
)
def test_enumeration_rejects_malformed_tables(table: Any) -> None:
    with pytest.raises(EnumException):
        Enumeration(table)


def test_enumeration_aliases_when_values_need_not_be_unique() -> None:
    aliased = Enumeration((("OLD", 1), ("NEW", 1), "NEXT"), are_unique=False)
    assert (aliased.OLD, aliased.NEW, aliased.NEXT) == (1, 1, 2)
    assert aliased.whatis(1) == "NEW"


def test_enumeration_is_fixed_once_built() -> None:
    with pytest.raises(EnumException):
        eSaAisErrorT.SA_AIS_OK = 2
    with pytest.raises(EnumException):
        del eSaAisErrorT.SA_AIS_OK
    with pytest.raises(TypeError):
        eSaAisErrorT.lookup["SA_AIS_OK"] = 2  # type: ignore[index]  # a read-only Mapping
    assert eSaAisErrorT.SA_AIS_OK == 1


def test_enumeration_survives_copy_and_pickle() -> None:
    for clone in (copy.deepcopy(eSaServicesT), pickle.loads(pickle.dumps(eSaServicesT))):
        assert dict(clone.lookup) == dict(eSaServicesT.lookup)
        assert dict(clone.reverse_lookup) == dict(eSaServicesT.reverse_lookup)
        assert clone.SA_SVC_NTF == 10


# --- SaVersionT, SaNameT, SaClmNodeAddressT -------------------------------------------


@pytest.mark.parametrize("code", ["B", b"B", ord("B")])
def test_version_constructor(code: str | bytes | int) -> None:
    version = SaVersionT(code, 4, 1)
    assert (version.releaseCode, version.majorVersion, version.minorVersion) == (b"B", 4, 1)
    assert bytes(memoryview(version)) == b"B\x04\x01"
    assert repr(version) == "SaVersionT('B', 4, 1)"


def test_version_keywords_default_and_copy() -> None:
    assert bytes(memoryview(SaVersionT())) == b"\0\0\0"
    keyword = SaVersionT(releaseCode="A", majorVersion=2, minorVersion=15)
    assert (keyword.releaseCode, keyword.majorVersion, keyword.minorVersion) == (b"A", 2, 15)
    # pyosaf's CLM agent deep-copies its version before each initialize call.
    clone = copy.deepcopy(keyword)
    clone.majorVersion = 3
    assert (clone.releaseCode, clone.majorVersion, keyword.majorVersion) == (b"A", 3, 2)


@pytest.mark.parametrize("code", ["BB", "é", b""])
def test_version_rejects_a_release_code_that_is_not_one_ascii_letter(code: str | bytes) -> None:
    with pytest.raises((TypeError, ValueError)):
        SaVersionT(code, 1, 1)


def test_name_constructor_and_str() -> None:
    dn = "safNode=PL-3,safCluster=myClmCluster"
    name = SaNameT(dn)
    assert name.length == len(dn)
    assert name.value == dn.encode()
    assert str(name) == dn
    assert repr(name) == f"SaNameT({dn!r})"
    assert bytes(memoryview(name))[2 : 2 + len(dn)] == dn.encode()
    assert SaNameT(dn.encode()).value == dn.encode()
    empty = SaNameT()
    assert (empty.length, empty.value, str(empty)) == (0, b"", "")


def test_name_length_counts_utf8_bytes_and_keeps_nuls() -> None:
    assert SaNameT("nœud").length == 5
    assert str(SaNameT("nœud")) == "nœud"
    with_nul = SaNameT(b"a\0b")
    assert with_nul.length == 3
    assert str(with_nul) == "a\0b"


def test_name_limit_is_256_bytes() -> None:
    assert SaNameT("x" * 256).length == 256
    assert str(SaNameT("x" * 256)) == "x" * 256
    with pytest.raises(ValueError, match="256"):
        SaNameT("x" * 257)


def test_name_inside_a_structure_is_copied_in() -> None:
    node = saClm.SaClmClusterNodeT_4()
    name = SaNameT("safNode=SC-1,safCluster=myClmCluster")
    node.nodeName = name
    name.length = 0
    assert str(node.nodeName) == "safNode=SC-1,safCluster=myClmCluster"
    assert node.executionEnvironment.length == 0


def test_node_address_constructor() -> None:
    address = saClm.SaClmNodeAddressT(saClm.eSaClmNodeAddressFamilyT.SA_CLM_AF_INET, "10.0.0.3")
    assert (address.family, address.length, address.value) == (1, 8, b"10.0.0.3")
    assert str(address) == "10.0.0.3"
    v6 = saClm.SaClmNodeAddressT(family=2, address=b"fe80::1")
    assert (v6.family, v6.length, str(v6)) == (2, 7, "fe80::1")
    blank = saClm.SaClmNodeAddressT()
    assert (blank.family, blank.length, blank.value) == (0, 0, b"")
    assert saClm.SaClmNodeAddressT(1, "a" * 64).length == 64
    with pytest.raises(ValueError, match="64"):
        saClm.SaClmNodeAddressT(1, "a" * 65)


# --- BYREF --------------------------------------------------------------------------------


def test_byref_none_is_a_null_pointer() -> None:
    assert BYREF(None) is None
    seen: list[bool] = []
    probe = CFUNCTYPE(None, POINTER(saClm.SaClmHandleT))(lambda handle: seen.append(bool(handle)))
    probe(BYREF(None))
    assert seen == [False]


def test_byref_passes_a_reference_the_callee_can_write_through() -> None:
    handle = saClm.SaClmHandleT()

    def fill(out: Any) -> None:
        out[0] = 0xC0FFEE

    CFUNCTYPE(None, POINTER(saClm.SaClmHandleT))(fill)(BYREF(handle))
    assert handle.value == 0xC0FFEE


# --- NULL-terminated arrays (pyosaf's marshalling helpers) ------------------------------


def item_type(array: Any) -> Any:
    """The ctypes type of a ctypes array's items."""
    return array._type_


def test_marshal_null_array_points_at_each_item_and_ends_with_null() -> None:
    items = [saAis.SaUint32T(5), saAis.SaUint32T(7)]
    array = saAis.marshalNullArray(items)
    assert array is not None and item_type(array) is POINTER(saAis.SaUint32T) and len(array) == 3
    assert [bool(p) for p in array] == [True, True, False]
    array[0][0] = 9  # the pointers reach the items themselves
    assert items[0].value == 9
    assert saAis.unmarshalNullArray(array) == [9, 7]


def test_marshal_null_array_keeps_its_items_alive() -> None:
    array = saAis.marshalNullArray([saAis.SaNameT("safNode=PL-3"), saAis.SaNameT("safNode=PL-4")])
    gc.collect()
    assert [str(name) for name in saAis.unmarshalNullArray(array)] == ["safNode=PL-3", "safNode=PL-4"]


def test_marshal_null_array_of_none_empty_and_strings() -> None:
    assert saAis.marshalNullArray(None) is None
    empty = saAis.marshalNullArray([])
    assert empty is not None and item_type(empty) is saAis.SaVoidPtr and list(empty) == [None]
    typed = saAis.marshalNullArray([], POINTER(saAis.SaNameT))
    assert typed is not None and item_type(typed) is POINTER(saAis.SaNameT) and not typed[0]
    # A list of strings is an SaStringT array: pyosaf's IMM attribute and object names.
    names = saAis.marshalNullArray([saAis.SaStringT(b"a"), b"b", "\u00e9"])
    assert names is not None and item_type(names) is saAis.SaStringT
    assert list(names) == [b"a", b"b", "\u00e9".encode(), None]


def test_marshal_null_array_refuses_what_is_no_ctypes_object_or_of_mixed_types() -> None:
    with pytest.raises(TypeError, match="SaUint32T"):
        saAis.marshalNullArray([5])
    with pytest.raises(TypeError, match="one type per array"):
        saAis.marshalNullArray([saAis.SaUint32T(5), saAis.SaUint64T(6)])


def test_marshal_sa_string_t_array() -> None:
    assert saAis.marshalSaStringTArray(None) is None
    empty = saAis.marshalSaStringTArray([])
    assert empty is not None and list(empty) == [None]
    array = saAis.marshalSaStringTArray(["x", b"", saAis.SaStringT(b"z")])
    assert array is not None and list(array) == [b"x", b"", b"z", None]
    with pytest.raises(ValueError, match="NULL"):
        saAis.marshalSaStringTArray([b"x", saAis.SaStringT()])
    with pytest.raises(TypeError, match="item 1"):
        saAis.marshalSaStringTArray([b"x", 3])  # type: ignore[list-item]


def test_unmarshal_reads_up_to_the_null_from_an_array_or_a_pointer() -> None:
    # As C hands out lists (IMM's error strings): a pointer to the first of a NULL-ended run.
    strings = (saAis.SaStringT * 4)(b"IMM: Resource abort: x", b"", b"y", None)
    first = ctypes.cast(strings, POINTER(saAis.SaStringT))
    assert saAis.unmarshalNullArray(first) == [b"IMM: Resource abort: x", b"", b"y"]  # "" does not end it
    assert saAis.unmarshalSaStringTArray(strings) == [b"IMM: Resource abort: x", b"", b"y"]
    assert saAis.unmarshalNullArray(POINTER(saAis.SaStringT)()) == []  # NULL
    assert saAis.unmarshalSaStringTArray(None) == []
    values = (POINTER(saAis.SaInt64T) * 3)()
    values[0], values[2] = pointer(saAis.SaInt64T(-1)), pointer(saAis.SaInt64T(2))  # values[1] is NULL
    assert saAis.unmarshalNullArray(values) == [-1]
    # An array without its NULL is read to its end, not past it.
    assert saAis.unmarshalNullArray((saAis.SaStringT * 2)(b"p", b"q")) == [b"p", b"q"]
    assert saAis.unmarshalNullArray(saAis.marshalNullArray([])) == []


def test_marshal_null_array_void_ptr_ptr() -> None:
    passed = saAis.marshalNullArrayVoidPtrPtr([saAis.SaUint32T(3), saAis.SaUint32T(4)])
    gc.collect()  # the pointer keeps the array and its items alive
    array = ctypes.cast(passed.contents, POINTER(POINTER(saAis.SaUint32T)))
    assert saAis.unmarshalNullArray(array) == [3, 4]
    assert not saAis.marshalNullArrayVoidPtrPtr(None).contents


# --- Structure layouts --------------------------------------------------------------------

#: (field names in order, field offsets on LP64, size on LP64)
LAYOUTS: dict[type[Any], tuple[list[str], list[int], int]] = {
    saAis.SaVersionT: (["releaseCode", "majorVersion", "minorVersion"], [0, 1, 2], 3),
    saAis.SaNameT: (["length", "value"], [0, 2], 258),
    saAis.SaAnyT: (["bufferSize", "bufferAddr"], [0, 8], 16),
    saAis.SaLimitValueT: (
        ["int64Value", "uint64Value", "timeValue", "floatValue", "doubleValue"],
        [0, 0, 0, 0, 0],
        8,
    ),
    saNtf.SaNtfCorrelationIdsT: (["rootCorrelationId", "parentCorrelationId", "notificationId"], [0, 8, 16], 24),
    saClm.SaClmNodeAddressT: (["family", "length", "value"], [0, 4, 6], 72),
    saClm.SaClmClusterNodeT: (
        ["nodeId", "nodeAddress", "nodeName", "member", "bootTimestamp", "initialViewNumber"],
        [0, 4, 76, 336, 344, 352],
        360,
    ),
    saClm.SaClmClusterNodeT_4: (
        ["nodeId", "nodeAddress", "nodeName", "executionEnvironment", "member", "bootTimestamp", "initialViewNumber"],
        [0, 4, 76, 334, 592, 600, 608],
        616,
    ),
    saClm.SaClmClusterNotificationT: (["clusterNode", "clusterChange"], [0, 360], 368),
    saClm.SaClmClusterNotificationT_4: (["clusterNode", "clusterChange"], [0, 616], 624),
    saClm.SaClmClusterNotificationBufferT: (["viewNumber", "numberOfItems", "notification"], [0, 8, 16], 24),
    saClm.SaClmClusterNotificationBufferT_4: (["viewNumber", "numberOfItems", "notification"], [0, 8, 16], 24),
    saClm.SaClmCallbacksT: (["saClmClusterNodeGetCallback", "saClmClusterTrackCallback"], [0, 8], 16),
    saClm.SaClmCallbacksT_3: (
        ["saClmClusterNodeGetCallback", "saClmClusterTrackCallback", "saClmClusterNodeEvictionCallback"],
        [0, 8, 16],
        24,
    ),
    saClm.SaClmCallbacksT_4: (["saClmClusterNodeGetCallback", "saClmClusterTrackCallback"], [0, 8], 16),
}


@pytest.mark.parametrize("struct", list(LAYOUTS), ids=lambda s: s.__name__)
def test_field_names_in_order(struct: type[Structure]) -> None:
    names, _, _ = LAYOUTS[struct]
    assert [field[0] for field in struct._fields_] == names


@pytest.mark.skipif(not LP64, reason="the expected offsets are worked out for LP64")
@pytest.mark.parametrize("struct", list(LAYOUTS), ids=lambda s: s.__name__)
def test_field_offsets_and_size_match_the_c_layout(struct: type[Structure]) -> None:
    names, offsets, size = LAYOUTS[struct]
    assert [getattr(struct, name).offset for name in names] == offsets
    assert ctypes.sizeof(struct) == size


def test_field_types() -> None:
    fields = dict(saClm.SaClmClusterNodeT_4._fields_)
    assert fields["nodeId"] is saClm.SaClmNodeIdT
    assert fields["nodeAddress"] is saClm.SaClmNodeAddressT
    assert fields["nodeName"] is SaNameT
    assert fields["executionEnvironment"] is SaNameT
    assert fields["member"] is saAis.SaBoolT
    assert fields["bootTimestamp"] is saAis.SaTimeT
    assert fields["initialViewNumber"] is saAis.SaUint64T
    assert dict(saClm.SaClmClusterNotificationBufferT_4._fields_)["notification"] is POINTER(
        saClm.SaClmClusterNotificationT_4
    )
    assert dict(saClm.SaClmClusterNotificationBufferT._fields_)["notification"] is POINTER(
        saClm.SaClmClusterNotificationT
    )
    assert dict(saClm.SaClmClusterNotificationT_4._fields_)["clusterNode"] is saClm.SaClmClusterNodeT_4


# --- Callback types -----------------------------------------------------------------------

CALLBACK_SIGNATURES: dict[str, tuple[Any, ...]] = {
    "SaClmClusterTrackCallbackT": (
        POINTER(saClm.SaClmClusterNotificationBufferT),
        saAis.SaUint32T,
        saAis.SaAisErrorT,
    ),
    "SaClmClusterNodeGetCallbackT": (saAis.SaInvocationT, POINTER(saClm.SaClmClusterNodeT), saAis.SaAisErrorT),
    "SaClmClusterNodeEvictionCallbackT": (
        saClm.SaClmHandleT,
        saAis.SaInvocationT,
        saClm.SaClmAdminOperationIdT,
    ),
    "SaClmClusterNodeGetCallbackT_4": (saAis.SaInvocationT, POINTER(saClm.SaClmClusterNodeT_4), saAis.SaAisErrorT),
    "SaClmClusterTrackCallbackT_4": (
        POINTER(saClm.SaClmClusterNotificationBufferT_4),
        saAis.SaUint32T,
        saAis.SaInvocationT,
        POINTER(SaNameT),
        POINTER(saNtf.SaNtfCorrelationIdsT),
        saClm.SaClmChangeStepT,
        saAis.SaTimeT,
        saAis.SaAisErrorT,
    ),
}


@pytest.mark.parametrize("name", list(CALLBACK_SIGNATURES))
def test_callback_types_are_cdecl_function_pointers(name: str) -> None:
    callback_type = getattr(saClm, name)
    assert issubclass(callback_type, ctypes._CFuncPtr)  # type: ignore[attr-defined]  # CFUNCTYPE's base
    assert callback_type._flags_ == ctypes._FUNCFLAG_CDECL  # type: ignore[attr-defined]
    assert callback_type._restype_ is None
    assert callback_type._argtypes_ == CALLBACK_SIGNATURES[name]


def test_unset_callbacks_are_null() -> None:
    callbacks = saClm.SaClmCallbacksT_4()
    assert not callbacks.saClmClusterTrackCallback
    assert not callbacks.saClmClusterNodeGetCallback
    assert bytes(memoryview(callbacks)) == bytes(16 if LP64 else ctypes.sizeof(callbacks))


def _notification(node_id: int, name: str, change: int, member: int) -> saClm.SaClmClusterNotificationT_4:
    item = saClm.SaClmClusterNotificationT_4()
    item.clusterNode.nodeId = node_id
    item.clusterNode.nodeName = SaNameT(name)
    item.clusterNode.nodeAddress = saClm.SaClmNodeAddressT(1, f"10.0.0.{node_id}")
    item.clusterNode.member = member
    item.clusterNode.bootTimestamp = 1_700_000_000 * saAis.saAis.SA_TIME_ONE_SECOND
    item.clusterNode.initialViewNumber = 3
    item.clusterChange = change
    return item


def test_track_callback_4_through_the_callbacks_structure() -> None:
    # The way pyosaf's CLM agent registers and reads a B.04 track callback.
    received: list[Any] = []

    def on_track(
        buffer: Any,
        members: int,
        invocation: int,
        root_cause: Any,
        correlation: Any,
        step: int,
        supervision: int,
        error: int,
    ) -> None:
        contents = buffer.contents
        nodes = [
            (
                contents.notification[i].clusterNode.nodeId,
                str(contents.notification[i].clusterNode.nodeName),
                str(contents.notification[i].clusterNode.nodeAddress),
                contents.notification[i].clusterChange,
            )
            for i in range(contents.numberOfItems)
        ]
        received.append(
            (
                contents.viewNumber,
                nodes,
                members,
                invocation,
                str(root_cause.contents) if root_cause else None,
                correlation.contents.notificationId if correlation else None,
                step,
                supervision,
                error,
            )
        )

    callbacks = saClm.SaClmCallbacksT_4()
    callbacks.saClmClusterTrackCallback = saClm.SaClmClusterTrackCallbackT_4(on_track)
    assert callbacks.saClmClusterTrackCallback
    changes = saClm.eSaClmClusterChangesT
    items = (saClm.SaClmClusterNotificationT_4 * 2)(
        _notification(1, "safNode=SC-1", changes.SA_CLM_NODE_NO_CHANGE, 1),
        _notification(2, "safNode=SC-2", changes.SA_CLM_NODE_LEFT, 0),
    )
    buffer = saClm.SaClmClusterNotificationBufferT_4(7, 2, items)
    ids = saNtf.SaNtfCorrelationIdsT(0, 0, 99)
    completed = saClm.eSaClmChangeStepT.SA_CLM_CHANGE_COMPLETED
    callback = callbacks.saClmClusterTrackCallback
    callback(pointer(buffer), 1, 0, SaNameT("safNode=SC-2"), pointer(ids), completed, -1, 1)
    callback(BYREF(buffer), 1, 5, None, None, saClm.eSaClmChangeStepT.SA_CLM_CHANGE_START, 10, 1)
    nodes = [(1, "safNode=SC-1", "10.0.0.1", 1), (2, "safNode=SC-2", "10.0.0.2", 3)]
    assert received == [
        (7, nodes, 1, 0, "safNode=SC-2", 99, 4, -1, 1),
        (7, nodes, 1, 5, None, None, 2, 10, 1),
    ]


def test_node_get_and_b01_callbacks_are_callable_from_python() -> None:
    calls: list[Any] = []
    callbacks = saClm.SaClmCallbacksT_3()
    callbacks.saClmClusterNodeGetCallback = saClm.SaClmClusterNodeGetCallbackT(
        lambda invocation, node, error: calls.append(("get", invocation, node.contents.nodeId, error))
    )
    callbacks.saClmClusterTrackCallback = saClm.SaClmClusterTrackCallbackT(
        lambda buffer, members, error: calls.append(("track", buffer.contents.viewNumber, members, error))
    )
    callbacks.saClmClusterNodeEvictionCallback = saClm.SaClmClusterNodeEvictionCallbackT(
        lambda handle, invocation, operation: calls.append(("evict", handle, invocation, operation))
    )
    node = saClm.SaClmClusterNodeT(nodeId=0x2010F)
    callbacks.saClmClusterNodeGetCallback(2**64 - 1, pointer(node), eSaAisErrorT.SA_AIS_OK)
    callbacks.saClmClusterTrackCallback(pointer(saClm.SaClmClusterNotificationBufferT(viewNumber=4)), 3, 1)
    callbacks.saClmClusterNodeEvictionCallback(17, 8, saClm.eSaClmAdminOperationIdT.SA_CLM_ADMIN_LOCK)
    get_4 = saClm.SaClmClusterNodeGetCallbackT_4(
        lambda invocation, node, error: calls.append(("get4", invocation, str(node.contents.nodeName), error))
    )
    node_4 = saClm.SaClmClusterNodeT_4(nodeName=SaNameT("safNode=PL-3"))
    get_4(1, pointer(node_4), eSaAisErrorT.SA_AIS_ERR_NOT_EXIST)
    assert calls == [
        ("get", 2**64 - 1, 0x2010F, 1),
        ("track", 4, 3, 1),
        ("evict", 17, 8, 2),
        ("get4", 1, "safNode=PL-3", 12),
    ]
