"""starlock-atls command line: options, usage errors and interruption (issue 16).

Usage errors are checked in process (``main`` returns before it starts anything or installs a
signal handler); what needs a running tunnel or a signal runs the CLI as a process.
"""

from __future__ import annotations

import importlib.metadata
import signal
import subprocess
import sys
import time

import pytest

from starlock.atls import cli

DUMMY_SERVER = ["tunnel", "server", "--listen", "127.0.0.1:0", "--forward", "127.0.0.1:9", "--issuer", "dummy",
                "--insecure-dummy"]  # fmt: skip


def _error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def _spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "starlock.atls.cli", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _stop(proc: subprocess.Popen[str]) -> str:
    """SIGTERM a listening CLI; its stderr once it exited 0."""
    assert proc.stdout is not None and proc.stderr is not None
    line = proc.stdout.readline()
    assert line.startswith("listening on port "), line + proc.stderr.read()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0
    return proc.stderr.read()


# --- -v anywhere, --version ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["-v", "6", "tunnel", "server", "--listen", "a:1", "--forward", "b:2"],
        ["tunnel", "-v", "6", "server", "--listen", "a:1", "--forward", "b:2"],
        ["tunnel", "server", "--listen", "a:1", "-v", "6", "--forward", "b:2"],
        ["tunnel", "client", "--listen", "a:1", "--connect", "b:2", "-v", "6"],
    ],
    ids=["before", "after-tunnel", "after-server", "after-client"],
)
def test_verbosity_is_read_before_or_after_the_subcommand(argv: list[str]) -> None:
    assert cli._build_parser().parse_args(argv).v == 6


def test_verbosity_defaults_to_2_and_a_later_default_does_not_override_it() -> None:
    parser = cli._build_parser()
    assert parser.parse_args(["tunnel", "server", "--listen", "a:1", "--forward", "b:2"]).v == 2
    assert parser.parse_args(["-v", "4", "tunnel", "server", "--listen", "a:1", "--forward", "b:2"]).v == 4


def test_verbosity_after_the_subcommand_takes_effect() -> None:
    """-v 0 after the subcommand hides the INFO lines that the default -v 2 shows."""
    quiet = _stop(_spawn(*DUMMY_SERVER, "-v", "0"))
    loud = _stop(_spawn(*DUMMY_SERVER))
    assert "tunnel server listening on port" in loud
    assert "tunnel server listening on port" not in quiet
    assert "WARNING" in quiet  # the dummy warning still shows


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"starlock-atls {importlib.metadata.version('starlock-atls')}"


# --- variants ------------------------------------------------------------------------------------


def test_help_lists_the_variants(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "1000")  # argparse wraps help at the terminal width
    with pytest.raises(SystemExit):
        cli.main(["tunnel", "client", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--variant VARIANT variant of --validate configs given without VARIANT= (one of: " in help_text
    for name in cli.VALIDATOR_VARIANTS:
        assert name in help_text
    assert "attest this side with VARIANT (one of: qemu-vtpm, dummy)" in help_text


def test_unknown_variant_names_the_choices(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["tunnel", "client", "--listen", "127.0.0.1:0", "--connect", "127.0.0.1:1", "--validate", "missing.yaml"]
    assert cli.main([*argv, "--variant", "qemu_vtpm"]) == cli.EXIT_USAGE
    line = _error_line(capsys)
    # refused before the config file is read
    assert line.startswith("starlock-atls: error: --variant: unknown or unsupported variant 'qemu_vtpm'; choose one")
    assert line.endswith(", ".join(cli.VALIDATOR_VARIANTS))
    assert "qemu-vtpm" in cli.VALIDATOR_VARIANTS and "aws-nitro-tpm" in cli.VALIDATOR_VARIANTS


def test_issuer_without_support_names_the_choices(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["tunnel", "server", "--listen", "127.0.0.1:0", "--forward", "127.0.0.1:1", "--issuer", "aws-nitro-tpm"]
    assert cli.main(argv) == cli.EXIT_USAGE
    assert _error_line(capsys) == (
        "starlock-atls: error: --issuer: unknown or unsupported variant 'aws-nitro-tpm'; "
        "choose one of: qemu-vtpm, dummy"
    )


# --- numbers and endpoints -----------------------------------------------------------------------


@pytest.mark.parametrize("value", ["-5", "-0.001", "nan", "inf"])
def test_idle_timeout_must_be_positive_or_zero_for_none(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([*DUMMY_SERVER, "--idle-timeout", value]) == cli.EXIT_USAGE
    line = _error_line(capsys)
    assert line.startswith("starlock-atls: error: --idle-timeout must be a number of seconds greater than 0")
    assert line.endswith(f"got {float(value):g}")


def test_idle_timeout_zero_means_none() -> None:
    args = cli._build_parser().parse_args([*DUMMY_SERVER, "--idle-timeout", "0"])
    cli._check_options(args)  # accepted
    assert (args.idle_timeout or None) is None


def test_max_connections_must_be_at_least_one(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([*DUMMY_SERVER, "--max-connections", "0"]) == cli.EXIT_USAGE
    assert _error_line(capsys) == "starlock-atls: error: --max-connections must be at least 1, got 0"


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--forward", "127.0.0.1:99999", "--forward '127.0.0.1:99999': the port must be 1–65535, got 99999"),
        ("--forward", "127.0.0.1:0", "--forward '127.0.0.1:0': the port must be 1–65535, got 0"),
        ("--forward", "[::1]:65536", "--forward '[::1]:65536': the port must be 1–65535, got 65536"),
        ("--forward", "h:" + "9" * 5000, "the port must be 1–65535, got 999999999999"),
        ("--listen", "127.0.0.1:70000", "--listen '127.0.0.1:70000': the port must be 0–65535 (0: any free port)"),
        ("--forward", "127.0.0.1", "--forward '127.0.0.1': expected host:port (e.g. 127.0.0.1:8080 or [::1]:8080)"),
        ("--forward", "127.0.0.1:http", "--forward '127.0.0.1:http': expected host:port"),
    ],
)
def test_endpoints_name_the_rule_they_break(
    option: str, value: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = {"--listen": "127.0.0.1:0", "--forward": "127.0.0.1:9"} | {option: value}
    server = ["tunnel", "server", "--listen", argv["--listen"], "--forward", argv["--forward"], "--issuer", "dummy",
              "--insecure-dummy"]  # fmt: skip
    assert cli.main(server) == cli.EXIT_USAGE
    line = _error_line(capsys)
    assert line.startswith("starlock-atls: error: ") and message in line
    assert "not host:port" not in line


def test_client_connect_port_is_checked(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["tunnel", "client", "--listen", "127.0.0.1:0", "--connect", "node:99999", "--accept-unattested-server"]
    assert cli.main(argv) == cli.EXIT_USAGE
    assert _error_line(capsys) == "starlock-atls: error: --connect 'node:99999': the port must be 1–65535, got 99999"


# --- warnings and interruption ---------------------------------------------------------------------


def test_accept_unattested_server_logs_a_warning() -> None:
    client = _spawn("tunnel", "client", "--listen", "127.0.0.1:0", "--connect", "127.0.0.1:9",
                    "--accept-unattested-server")  # fmt: skip
    logs = _stop(client)
    warnings = [line for line in logs.splitlines() if " WARNING " in line]
    assert len(warnings) == 1, logs
    assert "--accept-unattested-server: the server at 127.0.0.1:9 is NOT attested" in warnings[0]


def test_a_validating_client_logs_no_unattested_warning() -> None:
    client = _spawn("tunnel", "client", "--listen", "127.0.0.1:0", "--connect", "127.0.0.1:9", "--validate", "dummy",
                    "--insecure-dummy", "--accept-unattested-server")  # fmt: skip
    assert "NOT attested" not in _stop(client)


def test_ctrl_c_before_listening_exits_130_with_one_line() -> None:
    """Ctrl-C while the start hangs (a TPM that does not answer) ends the CLI, without a traceback."""
    code = (
        "import sys, time\n"
        "from starlock.atls import cli\n"
        "def hang(args):\n"
        "    print('starting', flush=True)\n"
        "    time.sleep(60)\n"
        "cli._start = hang\n"
        f"sys.exit(cli.main({DUMMY_SERVER!r}))\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline() == "starting\n"
    time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(10) == cli.EXIT_INTERRUPTED
    assert proc.stderr.read().splitlines() == ["starlock-atls: interrupted"]


def test_ctrl_c_once_listening_is_a_clean_shutdown() -> None:
    proc = _spawn(*DUMMY_SERVER)
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline().startswith("listening on port ")
    proc.send_signal(signal.SIGINT)
    assert proc.wait(10) == 0
    assert "Traceback" not in proc.stderr.read()
