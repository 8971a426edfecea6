"""The daemon's commands: ``pyclm node``, ``status``, ``watch``, ``key``, ``remove-nodes``.

Thin: parse, call :mod:`pyclm.daemon.service` or the control socket client, print.
Exit codes as for every ``pyclm`` command: 0 done, 1 the node or the socket refused (one
line on stderr), 2 a bad setting or flag (one line naming it).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio

from ..errors import ConfigError
from .client import ControlConnection, ControlError, request, socket_path
from .settings import SETTINGS, resolve

_TYPES: dict[str, Callable[[str], Any]] = {"int": int, "float": float, "str": str, "path": str, "list": str}


def add_parsers(sub: Any) -> None:
    """Add the daemon's subcommands to the ``pyclm`` parser's subparsers."""
    node = sub.add_parser("node", help="run a cluster member in the foreground (docs/daemon.md)")
    for setting in SETTINGS:
        text = setting.help if setting.default is None else f"{setting.help} (default: {_shown(setting.default)})"
        kwargs: dict[str, Any] = {"dest": setting.name, "default": None, "help": text}
        if setting.kind == "bool":
            node.add_argument(setting.flag, action=argparse.BooleanOptionalAction, **kwargs)
        else:
            metavar = setting.name.upper() if setting.kind != "path" else "PATH"
            node.add_argument(setting.flag, type=_TYPES[setting.kind], metavar=metavar, **kwargs)

    def target(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--control-socket", metavar="PATH", help="the node's control socket")
        parser.add_argument("--state-dir", metavar="DIR", help="the node's state dir (its control.sock)")
        parser.add_argument("--node-id", type=int, metavar="N", help="the node whose default state dir to use")

    status = sub.add_parser("status", help="a running node's view, members and counters")
    status.add_argument("--json", action="store_true", help="the control socket's answer as JSON")
    target(status)
    watch = sub.add_parser("watch", help="a running node's changes as they happen, one per line")
    watch.add_argument("--json", action="store_true", help="one JSON object per line")
    target(watch)

    key = sub.add_parser("key", help="cluster keys: generate a keyring file, rotate keys on a running node")
    keys = key.add_subparsers(dest="key_command", required=True, metavar="ACTION")
    generate = keys.add_parser("generate", help="write a new keyring file with one random key (mode 0600)")
    generate.add_argument("file", type=Path)
    generate.add_argument("--id", type=int, default=1, help="the key's id, 1..255 (default 1)")
    target(keys.add_parser("list", help="the key ids a running node holds and the one it sends with"))
    install = keys.add_parser("install", help="add a key to a running node (accepted, not yet used)")
    install.add_argument("file", type=Path, help="a keyring file holding the key (pyclm key generate)")
    install.add_argument("--id", type=int, required=True, help="the id the key gets in the node's ring")
    target(install)
    for action, text in (("use", "send with this key from now on"), ("remove", "drop a key no node sends with")):
        parser = keys.add_parser(action, help=text)
        parser.add_argument("id", type=int)
        target(parser)

    leave = sub.add_parser("leave", help="make a running node leave the cluster, as SIGTERM does")
    leave.add_argument("--no-validate", action="store_true", help="leave without asking the members' trackers")
    target(leave)

    remove = sub.add_parser("remove-nodes", help="declare nodes gone for good (docs/voting.md; audited)")
    remove.add_argument("nodes", help="comma-separated node ids")
    remove.add_argument("--reason", required=True, help="why (written to the audit log)")
    target(remove)


def _shown(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def run(args: argparse.Namespace) -> int:
    """Run a daemon command; ConfigError propagates (the caller prints it and exits 2)."""
    try:
        if args.command == "node":
            return _node(args)
        if args.command == "key" and args.key_command == "generate":
            return _generate(args.file, args.id)
        path = socket_path(args.control_socket, args.state_dir, args.node_id)
        return anyio.run(_client_command, args, path)
    except ControlError as exc:
        print(f"pyclm: {exc}", file=sys.stderr)
        return 1


def _node(args: argparse.Namespace) -> int:
    flags = {s.name: getattr(args, s.name) for s in SETTINGS}
    settings = resolve(flags)
    from . import logs
    from .service import serve

    logs.configure(settings.log_level, settings.node_id)
    return anyio.run(serve, settings)


def _generate(file: Path, key_id: int) -> int:
    from ..security import Keyring

    if file.exists():
        raise ConfigError("file", f"{file} exists: not overwriting a keyring")
    Keyring.generate(key_id).save(file)
    print(f"wrote {file}: key {key_id} (mode 0600); copy it to every node, e.g. with scp")
    return 0


async def _client_command(args: argparse.Namespace, path: Path) -> int:
    if args.command == "status":
        answer = await request(path, {"op": "status"})
        if args.json:
            print(json.dumps(answer["status"], indent=2))
        else:
            from .status import render

            render(answer["status"], print)
        return 0
    if args.command == "watch":
        return await _watch(path, args.json)
    if args.command == "leave":
        return await _leave(path, validate=not args.no_validate)
    if args.command == "remove-nodes":
        try:
            nodes = [int(n) for n in args.nodes.split(",") if n.strip()]
        except ValueError:
            raise ConfigError("nodes", f"{args.nodes!r} is not a comma-separated list of node ids") from None
        await request(path, {"op": "remove_nodes", "nodes": nodes, "reason": args.reason})
        print(f"nodes {nodes} declared removed (audited)")
        return 0
    return await _key(args, path)


async def _key(args: argparse.Namespace, path: Path) -> int:
    action = args.key_command
    if action == "list":
        answer = await request(path, {"op": "key.list"})
    elif action == "install":
        from .keys import read_secret

        answer = await request(path, {"op": "key.install", "id": args.id, "secret": read_secret(args.file)})
    else:
        answer = await request(path, {"op": f"key.{action}", "id": args.id})
    print(f"keys {answer['ids']}, sending with key {answer['active']}")
    return 0


async def _leave(path: Path, *, validate: bool) -> int:
    async with await ControlConnection.open(path) as conn:
        answer = await conn.request({"op": "leave", "validate": validate})
        kind = "validated" if answer["validate"] else "unvalidated"
        print(f"node leaving ({kind} leave) ...", flush=True)
        try:
            outcome = await conn.receive()
        except ControlError:
            print("node left the cluster")  # a successful leave ends the node and this connection
            return 0
    print(f"pyclm: {outcome.get('error', 'the leave was rejected')}", file=sys.stderr)
    return 1


async def _watch(path: Path, as_json: bool) -> int:
    async with await ControlConnection.open(path) as conn:
        async for record in conn.stream({"op": "watch"}):
            if as_json:
                print(json.dumps(record), flush=True)
            else:
                print(_watch_line(record), flush=True)
    return 0


def _watch_line(record: dict[str, Any]) -> str:
    event = record.get("event")
    if record.get("ok") is True:
        status = record["status"]
        primary = f"primary #{status['primary_number']}" if status["primary"] else "not primary"
        return f"node {status['node']}: view {status['view'] or '-'}, {primary}; watching (Ctrl-C stops)"
    if event == "view":
        return f"{record['wall']:.3f}  view {record['view']} installed: members {record['members']}"
    if event == "primary":
        return f"{record['wall']:.3f}  view {record['view']} is primary #{record['number']}"
    if event == "primary_lost":
        return f"{record['wall']:.3f}  view {record['view']} lost the primary"
    if event == "membership":
        parts = [f"view number {record['view_number']}"]
        for key in ("joined", "left", "shutdown", "reconfigured"):
            ids = [n["node_id"] for n in record[key]]
            if ids:
                parts.append(f"{key} {ids}")
        return f"{record['wall']:.3f}  membership: " + ", ".join(parts)
    if event == "lost":
        return f"(missed {record['count']} records: this watcher fell behind)"
    return json.dumps(record)
