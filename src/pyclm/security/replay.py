"""Replay protection: each (sender, incarnation, sequence) is accepted at most once.

Every sealed datagram carries its sender's incarnation and a sequence number that starts
at 1 and grows by one per datagram.  Per sender the receiver keeps the highest
incarnation seen and, for that incarnation, a sliding window over the sequence numbers,
as IPsec's anti-replay window does (RFC 4303, section 3.4.3):

* ``top`` is the highest sequence number accepted, and bit ``i`` of ``seen`` says that
  ``top - i`` was accepted, for ``i`` below the window size;
* a higher sequence slides the window up; one inside the window is accepted once (so
  datagrams the network reordered by less than the window are not lost); one at or
  below the floor (``top - window``) is refused, because the window no longer knows;
* a higher incarnation is a restart: the window starts again; a lower one is stale.

Only authenticated datagrams may reach :meth:`ReplayFilter.accept` (it records what it
accepts, so forged ones would poison the window).  Memory is bounded: at most
``max_senders`` senders are tracked, the least recently heard is forgotten first.
A forgotten sender's datagrams could be replayed once more, so the bound is set well
above any cluster's size (``MAX_CLUSTER_SIZE`` is 1024): only a flood of genuine senders
makes it evict.  A restarted receiver starts with no windows at all; see
``docs/security.md``, "What it does not protect against".
"""

from __future__ import annotations

from collections import OrderedDict

#: Sequence numbers a window remembers below the highest one (IPsec's default is 32 or 64).
DEFAULT_WINDOW = 64
#: Senders tracked at most before the least recently heard one is forgotten.
DEFAULT_MAX_SENDERS = 4096


class _Life:
    """The window of one sender's newest incarnation."""

    __slots__ = ("incarnation", "seen", "top")

    def __init__(self, incarnation: int, sequence: int) -> None:
        self.incarnation = incarnation
        self.top = sequence
        self.seen = 1


class ReplayFilter:
    """Accepts each (sender, incarnation, sequence) once; sans-IO, never raises on input."""

    def __init__(self, *, window: int = DEFAULT_WINDOW, max_senders: int = DEFAULT_MAX_SENDERS) -> None:
        if not isinstance(window, int) or isinstance(window, bool) or window < 1:
            raise ValueError(f"window must be a positive number of sequence numbers, got {window!r}")
        if not isinstance(max_senders, int) or isinstance(max_senders, bool) or max_senders < 1:
            raise ValueError(f"max_senders must be a positive number, got {max_senders!r}")
        self.window = window
        self.max_senders = max_senders
        self._mask = (1 << window) - 1
        self._lives: OrderedDict[int, _Life] = OrderedDict()

    def __len__(self) -> int:
        """The number of senders tracked."""
        return len(self._lives)

    def accept(self, sender: int, incarnation: int, sequence: int) -> str | None:
        """Record the datagram and return None if it is new; else the drop reason,
        ``"stale_incarnation"`` or ``"replayed"``, and nothing is recorded."""
        life = self._lives.get(sender)
        if life is None:
            self._lives[sender] = _Life(incarnation, sequence)
            if len(self._lives) > self.max_senders:
                self._lives.popitem(last=False)
            return None
        self._lives.move_to_end(sender)
        if incarnation != life.incarnation:
            if incarnation < life.incarnation:
                return "stale_incarnation"
            self._lives[sender] = _Life(incarnation, sequence)
            return None
        if sequence > life.top:
            shift = sequence - life.top
            life.seen = ((life.seen << shift) | 1) & self._mask if shift < self.window else 1
            life.top = sequence
            return None
        offset = life.top - sequence
        if offset >= self.window or life.seen >> offset & 1:
            return "replayed"
        life.seen |= 1 << offset
        return None
