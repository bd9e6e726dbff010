"""Fault tests: a recording process killed by SIGKILL or SIGTERM right after its last
``record()``, and the replay of what it left as pid 1 of a new pid namespace."""

from __future__ import annotations

import re
import shutil
import signal
import time
from pathlib import Path

import pytest

from tests.fault_support import (
    assert_exactly_once,
    child_env,
    journal_segments,
    run_flusher,
    start_recorder,
)

COUNT = 5_000


def test_sigkill_right_after_the_last_record_loses_nothing(db_url: str, tmp_path: Path) -> None:
    home = tmp_path / "app"
    env = child_env(home, database_url=db_url, flush_interval="60")
    child = start_recorder(env, COUNT, "wait")
    child.kill()
    child.finish(60)
    assert child.returncode == -signal.SIGKILL
    assert journal_segments(home)  # the events wait on disk
    out = run_flusher(env, 120)
    assert out.startswith("flushed"), out
    assert not journal_segments(home)
    assert_exactly_once(db_url, COUNT)


def test_sigterm_flushes_within_its_time_says_so_and_ends_the_process(
    db_url: str, tmp_path: Path
) -> None:
    home = tmp_path / "app"
    env = child_env(home, database_url=db_url, flush_interval="60", shutdown_timeout="30")
    child = start_recorder(env, COUNT, "wait")
    child.send_signal(signal.SIGTERM)
    _, err = child.finish(120)
    assert child.returncode == -signal.SIGTERM  # the default action still ends it
    assert "SIGTERM" in err and "events written" in err, err[-2000:]
    # Whatever the handler did not write, the next process does; nothing twice.
    assert run_flusher(env, 120).startswith("flushed")
    assert_exactly_once(db_url, COUNT)


#: Records without end (``request_id`` = their number); says ``recording`` after 2,000.
BUSY_RECORDER = r"""
import llmledger
i = 0
while True:
    llmledger.record(provider="openai", model="gpt-4o", input_tokens=100,
                     output_tokens=i % 50, request_id=str(i))
    i += 1
    if i == 2000:
        print("recording", flush=True)
"""


@pytest.mark.parametrize("writer_process", ["false", "true"])
def test_sigterm_in_the_middle_of_record_calls_flushes_and_ends_the_process(
    db_url: str, tmp_path: Path, writer_process: str
) -> None:
    # The handler may interrupt an append holding the journal's lock (one making a new
    # segment, every few thousand events): its flush must not wait on the main thread.
    import subprocess
    import sys

    home = tmp_path / "app"
    env = child_env(
        home,
        database_url=db_url,
        writer_process=writer_process,
        flush_interval="0.05",
        shutdown_timeout="60",
    )
    child = subprocess.Popen(
        [sys.executable, "-c", BUSY_RECORDER],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "recording"
    time.sleep(0.5)
    child.send_signal(signal.SIGTERM)
    _, err = child.communicate(timeout=120)
    assert child.returncode == -signal.SIGTERM, err[-3000:]
    assert re.search(r"SIGTERM: \d+ events written", err), err[-3000:]
    # What was recorded while the flush ran waits for the next process: then every
    # event the loop made is stored once, the numbers with no gap.
    assert run_flusher(env, 300).startswith("flushed")
    assert not journal_segments(home)
    ids = _stored_request_ids(db_url)
    assert len(ids) == len(set(ids)) >= 2_000
    assert set(ids) == {str(i) for i in range(len(ids))}


def _stored_request_ids(database_url: str) -> list[str]:
    from llmledger.store import open_store

    with open_store(database_url) as store:
        return [str(event.request_id) for event in store.events()]


def test_sigterm_with_a_short_time_leaves_the_rest_in_the_journal_and_counts_it(
    tmp_path: Path,
) -> None:
    home = tmp_path / "app"
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    env = child_env(home, database_url=url, flush_interval="60", shutdown_timeout="0")
    child = start_recorder(env, COUNT, "wait")
    child.send_signal(signal.SIGTERM)
    _, err = child.finish(120)
    assert child.returncode == -signal.SIGTERM
    assert "SIGTERM" in err and "left in the journal" in err, err[-2000:]
    assert run_flusher(env, 120).startswith("flushed")
    assert_exactly_once(url, COUNT)


def test_replay_as_pid_1_of_a_new_pid_namespace(tmp_path: Path) -> None:
    """The recorder and the replayer are both pid 1, each in its own namespace: a claim
    by pid would look alive to the replayer; the lock on the segment died with its holder."""
    unshare = shutil.which("unshare")
    assert unshare is not None, "util-linux's unshare is needed (CI runs as root)"
    prefix = [unshare, "--pid", "--fork", "--mount-proc", "--kill-child=SIGKILL"]
    home = tmp_path / "app"
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    env = child_env(home, database_url=url, flush_interval="60")
    child = start_recorder(env, COUNT, "wait", prefix=prefix)
    child.kill()  # unshare dies, and with it (--kill-child) the namespace's pid 1
    child.finish(60)
    out = run_flusher(env, 120, prefix=prefix)
    assert out.startswith("flushed"), out
    assert_exactly_once(url, COUNT)


APP_WITH_ITS_OWN_HANDLER = r"""
import signal, sys, threading, time
import llmledger

def own(signum, frame):
    print("the app's handler ran", flush=True)
    sys.exit(3)

signal.signal(signal.SIGTERM, own)
# A ledger first used from another thread installs nothing (Python allows handlers only
# from the main thread); the main thread's first use does.
worker = threading.Thread(target=lambda: llmledger.record(
    provider="openai", model="gpt-4o", input_tokens=1, output_tokens=1, request_id="0"))
worker.start(); worker.join()
assert signal.getsignal(signal.SIGTERM) is own
for i in range(1, 300):
    llmledger.record(provider="openai", model="gpt-4o", input_tokens=1, output_tokens=1,
                     request_id=str(i))
assert signal.getsignal(signal.SIGTERM) is not own
print("recorded", flush=True)
time.sleep(600)
"""


def test_sigterm_flushes_then_hands_the_signal_to_the_apps_own_handler(tmp_path: Path) -> None:
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    env = child_env(tmp_path / "app", database_url=url, flush_interval="60")
    child = subprocess.Popen(
        [sys.executable, "-c", APP_WITH_ITS_OWN_HANDLER],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "recorded"
    child.send_signal(signal.SIGTERM)
    out, err = child.communicate(timeout=120)
    assert child.returncode == 3, err[-3000:]  # the app's handler decided
    assert "the app's handler ran" in out
    assert re.search(r"SIGTERM: \d+ events written, none left in the journal", err), err[-3000:]
    assert_exactly_once(url, 300)


#: Makes ``argv[1]`` captured chat calls with their text kept (over a recorded answer),
#: flushes for ``argv[2]`` seconds (the writer has tried them), says ``recorded``, then
#: waits to be killed.
TEXT_RECORDER = r"""
import sys, time
import openai
import llmledger
from llmledger.capture import instrument
from tests.test_capture_support import JSON, Replay, recorded

replay = Replay({"/chat/completions": (200, recorded("openai_chat_prompt_cache_hit.json"), JSON)})
client = openai.OpenAI(api_key="sk-test", http_client=replay.sync_client(), max_retries=0)
with instrument(store_content=True):
    for i in range(int(sys.argv[1])):
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": f"question {i}"}]
        )
llmledger.flush(float(sys.argv[2]))
print("recorded", flush=True)
time.sleep(600)
"""

TEXTS = 300


def _record_texts_then_sigkill(env: dict[str, str], flush: float = 0.0) -> None:
    import subprocess
    import sys

    child = subprocess.Popen(
        [sys.executable, "-c", TEXT_RECORDER, str(TEXTS), str(flush)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    line = child.stdout.readline()
    child.kill()
    _, err = child.communicate(timeout=60)
    assert line.strip() == "recorded", err[-3000:]
    assert child.returncode == -signal.SIGKILL


def _assert_each_text_once(database_url: str) -> None:
    """Every captured call is stored once, each with its own prompt and the answer."""
    from llmledger.store import open_store

    with open_store(database_url) as store:
        events = list(store.events())
        assert len(events) == TEXTS == len({e.id for e in events})
        asked = set()
        for stored in events:
            text = store.get_content(stored.id)
            assert text is not None, f"event {stored.id} lost its text"
            assert text.response == "OK" and text.ts == stored.ts
            [number] = re.findall(r'"question (\d+)"', text.prompt or "")
            asked.add(int(number))
    assert asked == set(range(TEXTS))


def test_sigkill_right_after_captured_calls_keeps_their_text(db_url: str, tmp_path: Path) -> None:
    home = tmp_path / "app"
    env = child_env(home, database_url=db_url, flush_interval="60")
    _record_texts_then_sigkill(env)
    segments = journal_segments(home)
    assert any(b'"question ' in path.read_bytes() for path in segments)  # on disk, in the journal
    assert run_flusher(env, 120).startswith("flushed")
    _assert_each_text_once(db_url)


def test_sigkill_with_the_service_down_keeps_the_text_for_the_service(
    db_url: str, tmp_path: Path
) -> None:
    import json

    from tests.test_server_e2e import cli, free_port, serve

    key = json.loads(
        cli(db_url, "keys", "create", "--role", "ingest", "--tenant", "acme", "--json")
    )["secret"]
    port = free_port()
    home = tmp_path / "app"
    env = child_env(home, url=f"http://127.0.0.1:{port}", api_key=key, flush_interval="60")
    _record_texts_then_sigkill(env)  # nothing listens yet: every event waits in the journal
    assert sum(path.read_bytes().count(b'"question ') for path in journal_segments(home)) == TEXTS
    with serve(db_url, port):
        assert run_flusher(env, 120).startswith("flushed")
    assert not journal_segments(home)
    _assert_each_text_once(db_url)


def test_captured_calls_and_their_text_wait_while_the_ledger_is_read_only(
    tmp_path: Path,
) -> None:
    """The writer builds each captured call's event while the ledger cannot be written
    (immutable, as in tests/test_faults_store.py): building never writes the text on its
    own, so nothing is lost; the text is stored with its event once the ledger is back."""
    import subprocess

    from llmledger.store import open_store

    folder = tmp_path / "db"
    folder.mkdir()
    url = f"sqlite:///{folder / 'ledger.db'}"
    with open_store(url) as store:
        store.migrate()
    for leftover in folder.glob("ledger.db-*"):
        leftover.unlink()
    immutable = [str(folder / "ledger.db"), str(folder)]
    home = tmp_path / "app"
    env = child_env(home, database_url=url, flush_interval="0.05")
    subprocess.run(["chattr", "+i", *immutable], check=True)
    try:
        _record_texts_then_sigkill(env, flush=2)  # the writer built them and could not write
    finally:
        subprocess.run(["chattr", "-i", *immutable], check=True)
    assert run_flusher(env, 120).startswith("flushed")
    assert not journal_segments(home)
    _assert_each_text_once(url)


#: Records, then ends: its exit hook flushes (for ``shutdown_timeout``) into a database
#: nobody listens at.
ENDS_WITH_THE_STORE_DOWN = r"""
import time
import llmledger
for i in range(100):
    llmledger.record(provider="openai", model="gpt-4o", input_tokens=1, output_tokens=1,
                     request_id=str(i))
print("recorded", flush=True)
time.sleep(0.3)
"""


def test_sigterm_while_the_exit_hook_flushes_still_ends_the_process(tmp_path: Path) -> None:
    # The signal's flush runs on a thread of its own, which ends with the interpreter:
    # the exit hook hands the signal on once it flushed.
    import subprocess
    import sys

    env = child_env(
        tmp_path / "app",
        database_url="postgresql+psycopg://postgres@127.0.0.1:1/nothing",
        flush_interval="0.05",
        shutdown_timeout="3",
    )
    child = subprocess.Popen(
        [sys.executable, "-c", ENDS_WITH_THE_STORE_DOWN],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "recorded"
    time.sleep(1.0)  # the main thread ended; the exit hook is flushing
    child.send_signal(signal.SIGTERM)
    _, err = child.communicate(timeout=120)
    assert "exit: 0 events written; 100 left in the journal" in err, err[-3000:]
    assert child.returncode == -signal.SIGTERM, err[-3000:]


#: Records, says ``recorded``, sleeps until interrupted, then cleans up for 6 seconds.
INTERRUPTED_APP = r"""
import time
import llmledger
for i in range(100):
    llmledger.record(provider="openai", model="gpt-4o", input_tokens=1, request_id=str(i))
print("recorded", flush=True)
try:
    time.sleep(600)
except KeyboardInterrupt:
    print("interrupted", flush=True)
try:
    time.sleep(6)
    print("cleaned up", flush=True)
except KeyboardInterrupt:
    print("interrupted again", flush=True)
"""


def test_a_second_sigint_during_the_flush_acts_at_once_in_place_of_the_first(
    tmp_path: Path,
) -> None:
    import subprocess
    import sys

    # The store is down: the first signal's flush takes its whole shutdown_timeout.
    env = child_env(
        tmp_path / "app",
        database_url="postgresql+psycopg://postgres@127.0.0.1:1/none",
        shutdown_timeout="3",
        flush_interval="0.05",
    )
    child = subprocess.Popen(
        [sys.executable, "-c", INTERRUPTED_APP],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "recorded"
    child.send_signal(signal.SIGINT)
    time.sleep(0.5)
    child.send_signal(signal.SIGINT)  # impatient: the app's handler now, once
    out, err = child.communicate(timeout=120)
    assert out.split() == ["interrupted", "cleaned", "up"], (out, err[-3000:])
    assert child.returncode == 0
