"""The validated leave on real clusters: Node.leave(), leave validators and participants.

Three nodes (static majority) over a MemoryNetwork; every test runs on asyncio and trio.
Waits are bounded (``anyio.fail_after``); threads are joined with a timeout.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager

import anyio
import pytest

from pyclm import (
    ConfigError,
    LeaveProposal,
    LeaveRejected,
    LeaveStep,
    MembershipChange,
    MembershipConfig,
    Node,
)
from pyclm.runtime import LeaveRound
from pyclm.transports import MemoryNetwork
from test_runtime import FAST, LIMIT, QUICK, majority, poll_until

pytestmark = pytest.mark.anyio

IDS = [1, 2, 3]


class Trio:
    """Nodes 1-3, started, each with its own exit; ``changes[n]`` records what node n reported."""

    def __init__(self, net: MemoryNetwork, stack: AsyncExitStack, options: dict[str, float]) -> None:
        self.net = net
        self.stack = stack
        self.options = options
        self.nodes: dict[int, Node] = {}
        self.changes: dict[int, list[MembershipChange]] = {}

    async def start(self, node_id: int) -> Node:
        config = MembershipConfig(node_id=node_id, timing=FAST)
        names = {n: f"n{n}" for n in IDS}
        node = Node(config, majority(IDS), self.net.endpoint(node_id), names=names, **self.options)  # type: ignore[arg-type]
        self.nodes[node_id] = await self.stack.enter_async_context(node)
        self.changes[node_id] = []
        node.add_membership_listener(self.changes[node_id].append)
        return node

    async def formed(self) -> None:
        with anyio.fail_after(LIMIT):
            for node in self.nodes.values():
                await node.wait_for(lambda node=node: node.is_primary and len(node.cluster_members()) == 3)  # type: ignore[misc]
        for changes in self.changes.values():
            changes.clear()

    async def until(self, condition: Callable[[], bool]) -> None:
        await poll_until(condition, "the condition holds", self.nodes.values())


@asynccontextmanager
async def trio_cluster(**options: float) -> AsyncIterator[Trio]:
    async with MemoryNetwork(QUICK, seed=1) as net, AsyncExitStack() as stack:
        group = Trio(net, stack, options)
        for node_id in IDS:
            await group.start(node_id)
        await group.formed()
        yield group


def recording(into: list[int], verdict: bool) -> Callable[[LeaveProposal], bool]:
    """A validator that notes who asked to leave and answers ``verdict``."""

    def validator(proposal: LeaveProposal) -> bool:
        into.append(proposal.leaving.node_id)
        return verdict

    return validator


def shutdown_of(changes: list[MembershipChange]) -> list[int]:
    return [n.node_id for change in changes for n in change.shutdown]


# ---------------------------------------------------------------------- refused


async def test_a_validator_on_another_node_refuses_and_the_leaver_stays() -> None:
    async with trio_cluster() as c:
        seen: list[LeaveProposal] = []

        def refuse_node_3(proposal: LeaveProposal) -> bool:
            seen.append(proposal)
            return proposal.leaving.node_id != 3

        remove = c.nodes[2].add_leave_validator(refuse_node_3)
        view = c.nodes[1].view_number
        with pytest.raises(LeaveRejected) as refused:
            await c.nodes[3].leave()
        assert (refused.value.reason, refused.value.rejected, refused.value.timed_out) == ("rejected", (2,), ())
        assert "rejected by node(s) 2" in str(refused.value) and "validate=False" in str(refused.value)
        [proposal] = seen
        assert (proposal.leaving.node_id, proposal.leaving.name, proposal.view_number) == (3, "n3", view)
        assert [n.node_id for n in proposal.change.members] == [1, 2] and proposal.change.shutdown == (
            proposal.leaving,
        )
        assert proposal.time_supervision is None
        # The leaver keeps running as before; no view changed; nobody reported a change.
        await anyio.sleep(0.1)
        assert c.nodes[3].running and c.nodes[3].is_member and c.nodes[3].is_primary
        assert {n.view_number for n in c.nodes.values()} == {view}
        assert {n.view.view_id for n in c.nodes.values() if n.view is not None} == {c.nodes[1].view.view_id}  # type: ignore[union-attr]
        assert all(changes == [] for changes in c.changes.values())
        # Once the validator is gone, the same node leaves.
        remove()
        remove()  # idempotent
        await c.nodes[3].leave()
        assert c.nodes[3].stopped
        await c.until(lambda: shutdown_of(c.changes[1]) == [3])


async def test_an_async_validator_that_does_not_answer_in_time_times_the_leave_out() -> None:
    async with trio_cluster(leave_validate_timeout=0.3) as c:
        ended = anyio.Event()

        async def ponder(proposal: LeaveProposal) -> bool:
            try:
                await anyio.sleep_forever()
            finally:
                ended.set()  # cancelled once the step is over
            return True  # pragma: no cover

        c.nodes[1].add_leave_validator(ponder)
        began = anyio.current_time()
        with pytest.raises(LeaveRejected) as refused:
            await c.nodes[2].leave()
        assert anyio.current_time() - began >= 0.3 * 0.9
        assert (refused.value.reason, refused.value.timed_out) == ("timed out", (1,))
        with anyio.fail_after(LIMIT):
            await ended.wait()
        assert c.nodes[2].running and c.nodes[2].is_member


async def test_cancelling_the_leave_during_validate_calls_it_off() -> None:
    async with trio_cluster() as c:
        asked = anyio.Event()
        ended = anyio.Event()

        async def hesitate(proposal: LeaveProposal) -> bool:
            asked.set()
            try:
                await anyio.sleep_forever()
            finally:
                ended.set()
            return True  # pragma: no cover

        c.nodes[1].add_leave_validator(hesitate)
        with anyio.move_on_after(LIMIT) as scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(c.nodes[3].leave)
                await asked.wait()
                tg.cancel_scope.cancel()
        assert not scope.cancelled_caught
        with anyio.fail_after(LIMIT):
            await ended.wait()  # the ABORT reached node 1: its validator's task was cancelled
        assert c.nodes[3].running and c.nodes[3].is_member


# ---------------------------------------------------------------------- accepted


async def test_all_accept_and_the_others_see_shutdown() -> None:
    async with trio_cluster() as c:
        asked: dict[int, list[int]] = {n: [] for n in IDS}

        async def slowly_yes(proposal: LeaveProposal) -> bool:
            await anyio.sleep(0.01)
            asked[1].append(proposal.leaving.node_id)
            return True

        c.nodes[1].add_leave_validator(slowly_yes)
        c.nodes[2].add_leave_validator(recording(asked[2], True))
        c.nodes[3].add_leave_validator(recording(asked[3], True))  # its own leave too
        view = c.nodes[1].view_number
        await c.nodes[3].leave()
        assert asked == {1: [3], 2: [3], 3: [3]}
        assert c.nodes[3].stopped
        assert shutdown_of(c.changes[3]) == [3]  # the leaver reports itself SHUTDOWN
        for n in (1, 2):
            await c.until(lambda n=n: shutdown_of(c.changes[n]) == [3])  # type: ignore[misc]
            [change] = c.changes[n]
            assert change.view_number > view and [m.node_id for m in change.members] == [1, 2]
        assert c.nodes[3].counters.get("leave_rx_malformed", 0) == 0


async def test_start_supervision_expiry_still_leaves() -> None:
    async with trio_cluster(leave_start_supervision=0.3) as c:
        closed = threading.Event()
        supervision: list[float | None] = []

        class SlowStarter:
            """Answers VALIDATE at once; never answers START."""

            def begin_leave_step(
                self, step: LeaveStep, proposal: LeaveProposal, answer: Callable[[bool], None]
            ) -> LeaveRound | None:
                if step is LeaveStep.VALIDATE:
                    return None
                supervision.append(proposal.time_supervision)
                return Round()

        class Round:
            def close(self) -> None:
                closed.set()

            def abort(self) -> None:
                raise AssertionError("START is never aborted")

        c.nodes[1].add_leave_participant(SlowStarter())
        began = anyio.current_time()
        await c.nodes[2].leave()
        assert anyio.current_time() - began >= 0.3 * 0.9
        assert supervision == [0.3]
        await c.until(closed.is_set)
        await c.until(lambda: shutdown_of(c.changes[1]) == [2])


async def test_answers_may_come_from_other_threads() -> None:
    async with trio_cluster() as c:
        threads: list[threading.Thread] = []

        class Threaded:
            def begin_leave_step(
                self, step: LeaveStep, proposal: LeaveProposal, answer: Callable[[bool], None]
            ) -> LeaveRound | None:
                thread = threading.Thread(target=answer, args=(True,), name=f"answers {step.name}")
                threads.append(thread)
                thread.start()
                return Done()

        class Done:
            def close(self) -> None:
                pass

            def abort(self) -> None:
                pass

        c.nodes[2].add_leave_participant(Threaded())
        await c.nodes[1].leave()
        for thread in threads:
            thread.join(LIMIT)
            assert not thread.is_alive()
        assert [t.name for t in threads] == ["answers VALIDATE", "answers START"]
        await c.until(lambda: shutdown_of(c.changes[2]) == [1])


async def test_a_raising_validator_does_not_refuse(caplog: pytest.LogCaptureFixture) -> None:
    async with trio_cluster() as c:

        def broken(proposal: LeaveProposal) -> bool:
            raise RuntimeError("validator bug")

        async def broken_later(proposal: LeaveProposal) -> bool:
            raise RuntimeError("async validator bug")

        c.nodes[1].add_leave_validator(broken)
        c.nodes[2].add_leave_validator(broken_later)
        with caplog.at_level(logging.ERROR, logger="pyclm.runtime"):
            await c.nodes[3].leave()
        assert "validator bug" in caplog.text and "async validator bug" in caplog.text
        assert c.nodes[3].stopped


# ---------------------------------------------------------------------- without validation


async def test_validate_false_never_asks_and_leaving_the_block_cannot_be_refused() -> None:
    async with trio_cluster() as c:
        asked: list[int] = []
        for node in c.nodes.values():
            node.add_leave_validator(recording(asked, False))
        await c.nodes[3].leave(validate=False)
        await c.until(lambda: shutdown_of(c.changes[1]) == [3])
        # Leaving node 2's `async with` block normally: a graceful leave nobody is asked about.
        await c.stack.aclose()
        assert asked == []
        assert c.nodes[2].stopped and shutdown_of(c.changes[2]) == [3, 2]


async def test_validate_false_cuts_a_validated_leave_short() -> None:
    async with trio_cluster() as c:
        asked = anyio.Event()

        async def never(proposal: LeaveProposal) -> bool:
            asked.set()
            await anyio.sleep_forever()
            return True  # pragma: no cover

        c.nodes[1].add_leave_validator(never)
        returned: list[str] = []

        async def validated() -> None:
            await c.nodes[3].leave()
            returned.append("validated")

        with anyio.fail_after(LIMIT):
            async with anyio.create_task_group() as tg:
                tg.start_soon(validated)
                await asked.wait()
                await c.nodes[3].leave(validate=False)  # the second signal
                returned.append("unvalidated")
        assert sorted(returned) == ["unvalidated", "validated"] and c.nodes[3].stopped


async def test_a_node_outside_a_primary_leaves_at_once() -> None:
    async with MemoryNetwork(QUICK) as net:
        node = Node(MembershipConfig(node_id=1, timing=FAST), majority([1, 2]), net.endpoint(1))
        async with node:
            node.add_leave_validator(lambda proposal: False)
            with anyio.fail_after(LIMIT):
                await node.leave()
            assert node.stopped


async def test_a_view_change_during_validation_asks_again_in_the_new_view() -> None:
    async with trio_cluster() as c:
        asked: list[int] = []

        async def node_3_first(proposal: LeaveProposal) -> bool:
            asked.append(proposal.leaving.node_id)
            if proposal.leaving.node_id == 2:
                # Until node 1 reports node 3 gone: its view change cancels this first.
                await c.until(lambda: shutdown_of(c.changes[1]) == [3])
            return True

        c.nodes[1].add_leave_validator(node_3_first)
        with anyio.fail_after(LIMIT):
            async with anyio.create_task_group() as tg:
                tg.start_soon(c.nodes[2].leave)
                await c.until(lambda: asked == [2])
                tg.start_soon(c.nodes[3].leave)
        assert c.nodes[2].stopped and c.nodes[3].stopped
        # Node 3 left while node 2's leave was in VALIDATE: that one was asked again, in {1, 2}.
        assert asked == [2, 3, 2]
        await c.until(lambda: shutdown_of(c.changes[1])[:1] == [3])


# ---------------------------------------------------------------------- settings and misuse


async def test_settings_and_misuse() -> None:
    async with MemoryNetwork(QUICK) as net:
        config = MembershipConfig(node_id=1, timing=FAST)
        endpoint = net.endpoint(1)
        for setting in ("leave_validate_timeout", "leave_start_supervision"):
            for bad in (0, -1.0, float("nan"), float("inf"), True):
                with pytest.raises(ConfigError, match=setting):
                    Node(config, majority([1]), endpoint, **{setting: bad})  # type: ignore[arg-type]
        with pytest.raises(ConfigError, match="leave_validate_timeout"):
            Node(config, majority([1]), endpoint, leave_validate_timeout=2**32)
        assert Node(config, majority([1]), endpoint).leave_validate_timeout == 5.0
        node = Node(config, majority([1]), endpoint, leave_validate_timeout=2, leave_start_supervision=3)
        assert (node.leave_validate_timeout, node.leave_start_supervision) == (2.0, 3.0)
        with pytest.raises(TypeError, match="begin_leave_step"):
            node.add_leave_participant(object())  # type: ignore[arg-type]
        async with node:
            with pytest.raises(TypeError, match="True or False"):
                await node.leave(validate="yes")  # type: ignore[arg-type]
            await node.leave()
            await node.leave()  # stopped: nothing to do
