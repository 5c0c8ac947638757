"""tasks/facts.py: the one-command bundle of facts, parsed back into each fact's answer."""

from __future__ import annotations

import subprocess

from pyinfra.facts.server import Sysctl

from tasks.facts import Bundle, ManagedFiles, PresentPaths, _command_of


def run_bundle(parts: tuple[str, ...]) -> list[tuple[int, list[str]]]:
    """Run the bundle's command in a local shell, as pyinfra would on a host."""
    out = subprocess.run(
        ["sh", "-c", Bundle().command(parts=parts)], capture_output=True, text=True, check=True
    ).stdout
    return Bundle().process(out.splitlines())


def test_each_part_gets_its_own_lines_and_exit_status():
    results = run_bundle(("echo a; echo b", "false", "true", "echo c"))
    assert results == [(0, ["a", "b"]), (1, []), (0, []), (0, ["c"])]


def test_a_part_without_a_final_newline_keeps_its_last_line():
    assert run_bundle(("printf x", "echo y")) == [(0, ["x"]), (0, ["y"])]


def test_a_parts_stderr_is_dropped_and_does_not_stop_the_next_part():
    assert run_bundle(("echo out; echo err >&2; exit 3", "echo next")) == [
        (3, ["out"]),
        (0, ["next"]),
    ]


def test_parts_that_end_in_a_separator_or_comment_still_run_alone():
    assert run_bundle(("echo a;", "echo b # a comment", "echo c &&\ntrue")) == [
        (0, ["a"]),
        (0, ["b"]),
        (0, ["c"]),
    ]


def test_the_marker_is_not_confused_with_ordinary_output():
    assert run_bundle(("echo @@proxy-deploy-fact", "echo z")) == [
        (0, ["@@proxy-deploy-fact"]),
        (0, ["z"]),
    ]


def test_present_paths_sees_files_directories_and_dangling_links(tmp_path):
    (tmp_path / "file").write_text("x")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    paths = tuple(str(tmp_path / n) for n in ("file", "dangling", "missing"))
    [(status, lines)] = run_bundle((_command_of(PresentPaths, {"paths": paths}),))
    assert status == 0
    assert PresentPaths().process(lines) == {paths[0], paths[1]}


def test_managed_files_reports_hash_and_mode_of_existing_files_only(tmp_path):
    (tmp_path / "a").write_text("hello\n")
    (tmp_path / "a").chmod(0o600)
    paths = (str(tmp_path / "a"), str(tmp_path / "b"))
    [(status, lines)] = run_bundle((_command_of(ManagedFiles, {"paths": paths}),))
    assert status == 0
    assert ManagedFiles().process(lines) == {
        paths[0]: ("f572d396fae9206628714fb2ce00f72e94f2258f", "600")
    }


def test_stock_facts_with_quoted_commands_are_bundled_as_their_raw_command():
    command = _command_of(Sysctl, {"keys": ["kernel.ostype"]})
    assert command.startswith("sysctl kernel.ostype")
    [(status, lines)] = run_bundle((command,))
    assert status == 0
    assert Sysctl().process(lines) == {"kernel.ostype": "Linux"}


def test_managed_files_fact_reads_hash_mode_and_path_and_skips_junk():
    output = [f"{'a' * 40} 600 /etc/default/proxy-log-shipping", f"{'b' * 40} 644 /etc/x y", ""]
    assert ManagedFiles().process(output) == {
        "/etc/default/proxy-log-shipping": ("a" * 40, "600"),
        "/etc/x y": ("b" * 40, "644"),
    }
