"""The SA Forum CLM API on pyclm, with the module and names of OpenSAF's pyosaf bindings.

A program written against pyosaf (``from pyosaf import saAis, saClm``) runs on
pyclm when its import becomes ``from pyclm.saf import saAis, saClm``.  See
docs/saf.md for what is supported, the versions (B.01.01 and B.04.01) and where
pyclm's membership differs from OpenSAF's.

``saAis``: the common AIS types, constants and enumerations.
``saClm``: the CLM types, callback types and functions.
``saNtf``: the NTF correlation-id types the B.04 track callback carries.
"""

from __future__ import annotations

from pyclm.saf import saAis, saClm, saNtf

__all__ = ["saAis", "saClm", "saNtf"]
