"""Reading py-spy's collapsed stacks and finding where our code spends its samples."""

from __future__ import annotations

from pathlib import Path

from bench.harness.profiling import Frame, parse_frame, read_collapsed, summarise

SITE = "/venv/lib/python3.11/site-packages"
SRC = "/work/checkout/src/aigen"
LOOP = "run_forever (/usr/lib/python3.11/asyncio/base_events.py:607)"
VIEW = f"generate ({SRC}/web/api.py:35)"
CALL = f"ClaudeClient.complete ({SRC}/clients/claude.py:72)"
SDK = f"AsyncMessages.create ({SITE}/anthropic/resources/messages/messages.py:3012)"
FETCH = f"Connection.fetchrow ({SITE}/asyncpg/connection.py:775)"
LOCK = f"lock_user ({SRC}/store/repository.py:114)"
IDLE = "_worker (/usr/lib/python3.11/concurrent/futures/thread.py:81)"
H11 = f"Connection.next_event ({SITE}/h11/_connection.py:420)"


def write_stacks(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "stacks.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_parse_frame_keeps_function_and_path() -> None:
    assert parse_frame(CALL) == Frame("ClaudeClient.complete", f"{SRC}/clients/claude.py")
    assert parse_frame(CALL).ours and not parse_frame(SDK).ours
    assert parse_frame("<module> (<string>)") == Frame("<module>", "<string>")
    assert parse_frame(SDK).label == "AsyncMessages.create (resources/messages/messages.py)"
    assert parse_frame(CALL).label == "ClaudeClient.complete (aigen/clients/claude.py)"


def test_summary_leaves_idle_threads_out_and_shares_the_rest(tmp_path: Path) -> None:
    path = write_stacks(
        tmp_path,
        [
            f"{LOOP};{VIEW};{CALL};{SDK} 6",
            f"{LOOP};{VIEW};{LOCK};{FETCH} 2",
            f"{LOOP};{H11} 2",
            f"threading;{IDLE} 90",
            "not a stack line",
        ],
    )
    summary = summarise(read_collapsed(path))
    assert summary["samples"] == 10
    assert summary["idle_thread_samples_left_out"] == 90
    assert summary["outside_our_code"] == 0.2
    inclusive = {entry["where"]: entry["share"] for entry in summary["our_functions_inclusive"]}
    assert inclusive == {
        "generate (aigen/web/api.py)": 0.8,
        "ClaudeClient.complete (aigen/clients/claude.py)": 0.6,
        "lock_user (aigen/store/repository.py)": 0.2,
    }
    calls = summary["our_calls_into"]
    assert calls[0] == {
        "where": "ClaudeClient.complete (aigen/clients/claude.py) -> "
        "AsyncMessages.create (resources/messages/messages.py)",
        "share": 0.6,
    }
    leaves = {entry["where"]: entry["share"] for entry in summary["leaf_packages"]}
    assert leaves == {"anthropic": 0.6, "asyncpg": 0.2, "h11": 0.2}


def test_recursion_is_counted_once_per_sample(tmp_path: Path) -> None:
    path = write_stacks(tmp_path, [f"{LOOP};{VIEW};{VIEW};{SDK} 4"])
    inclusive = summarise(read_collapsed(path))["our_functions_inclusive"]
    assert inclusive == [{"where": "generate (aigen/web/api.py)", "share": 1.0}]
