"""Two openheavy processes on one machine: an `ask` alone, then the same `ask` while an `eval` runs at
concurrency 2, both on the same embedded model. Prints the ask's wall time alone and during the eval,
their ratio (the goal: within 3x; two private llama-servers with all cores each made calls 50-100x
slower), and whether both processes used one llama-server, as `openheavy model status` shows it.

Steps, each a separate `openheavy` process, in a fresh data directory unless --data-dir is given:
1. `model stop`, then a first `ask` that starts the shared server (and builds the corpus), timed apart;
2. the `ask` alone, server warm;
3. `eval DATASET --concurrency 2` in the background; once it holds a lease on the server, the same
   `ask` again, while the shared-server records (what `model status` shows) are polled every 0.1 s for
   the servers and the processes holding leases on them;
4. wait for the eval, print the table, write the JSON, `model stop` (unless --keep-server).

    python benchmarks/bench_shared_server.py [--model local:fast] [--limit 6] [--out bench-shared-server.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from openheavy.models.shared_server import server_statuses

QUESTION = "How do I run a subprocess with a timeout and capture its output?"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--model", default="local:fast", help="an embedded model (default local:fast)")
    parser.add_argument("--question", default=QUESTION)
    parser.add_argument("--mode", default="single", help="the ask's mode (default single)")
    parser.add_argument("--max-steps", type=int, default=3, help="the ask's and the eval's (default 3)")
    parser.add_argument("--dataset", default="gsm8k", help="what the eval answers (default gsm8k)")
    parser.add_argument("--eval-modes", default="direct", help="the eval's modes (default direct)")
    parser.add_argument("--limit", type=int, default=10, help="eval items (default 10: it outlasts the ask)")
    parser.add_argument("--concurrency", type=int, default=2, help="eval concurrency (default 2)")
    parser.add_argument("--eval-data-dir", type=Path, help="benchmark data (default: openheavy's)")
    parser.add_argument("--data-dir", type=Path, help="openheavy data directory (default: a fresh one)")
    parser.add_argument(
        "--openheavy",
        default=f"{shlex.quote(sys.executable)} -m openheavy",
        help="the command that runs openheavy (default: this Python's)",
    )
    parser.add_argument(
        "--wait", type=float, default=600.0, help="most seconds to wait for the eval to start"
    )
    parser.add_argument("--keep-server", action="store_true", help="leave the shared server running")
    parser.add_argument("--out", type=Path, default=Path("bench-shared-server.json"))
    args = parser.parse_args(argv)
    for name in ("max_steps", "limit", "concurrency"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.keep_server and args.data_dir is None:
        parser.error("--keep-server needs --data-dir: the fresh data directory is removed at the end")
    if not args.model.startswith("local"):
        parser.error(
            "--model must be an embedded model (local, local:fast, local:tiny): only those share a server"
        )
    return args


@dataclass
class Observed:
    """What `model status --json` showed while the ask ran during the eval."""

    servers: set[int] = field(default_factory=set)
    users: dict[int, set[int]] = field(default_factory=dict)  # server pid -> client pids seen with a lease

    def add(self, data_dir: Path, model: str) -> None:
        """Look once (in this process: fast enough to see a short ask's lease)."""
        for server in server_statuses(data_dir):
            if server.model == model and server.problem is None:
                self.servers.add(server.server_pid)
                self.users.setdefault(server.server_pid, set()).update(u.pid for u in server.users)


class Bench:
    def __init__(self, args: argparse.Namespace, data_dir: Path) -> None:
        self.args = args
        self.command = shlex.split(args.openheavy)
        self.data_dir = data_dir
        self.env = {**os.environ, "OPENHEAVY_DATA_DIR": str(data_dir)}

    def openheavy(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([*self.command, *args], env=self.env, capture_output=True, text=True)
        if check and done.returncode != 0:
            raise SystemExit(
                f"`openheavy {' '.join(args)}` failed ({done.returncode}):\n{done.stderr[-2000:]}"
            )
        return done

    def status(self) -> dict[str, Any]:
        """What `openheavy model status --json` prints."""
        report: dict[str, Any] = json.loads(self.openheavy("model", "status", "--json").stdout)
        return report

    def ask_command(self) -> list[str]:
        a = self.args
        return [*self.command, "ask", a.question, "--model", a.model, "--mode", a.mode,
                "--max-steps", str(a.max_steps), "--json"]  # fmt: skip

    def ask(self) -> tuple[float, dict[str, Any]]:
        started = time.perf_counter()
        done = subprocess.run(self.ask_command(), env=self.env, capture_output=True, text=True)
        wall = time.perf_counter() - started
        if done.returncode != 0:
            # with --json a failed ask reports its error on stdout
            raise SystemExit(
                f"the ask failed ({done.returncode}):\n{done.stderr[-2000:]}{done.stdout[-2000:]}"
            )
        result: dict[str, Any] = json.loads(done.stdout)
        return wall, result

    def start_eval(self, out_dir: Path) -> subprocess.Popen[str]:
        a = self.args
        command = [*self.command, "eval", a.dataset, "--modes", a.eval_modes, "--limit", str(a.limit),
                   "--model", a.model, "--concurrency", str(a.concurrency), "--max-steps", str(a.max_steps),
                   "--out", str(out_dir)]  # fmt: skip
        if a.eval_data_dir is not None:
            command += ["--data-dir", str(a.eval_data_dir)]
        return subprocess.Popen(
            command, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    def wait_for_lease(self, process: subprocess.Popen[str]) -> None:
        """Until `process` holds a lease on the model's server: it is then asking the model."""
        deadline = time.monotonic() + self.args.wait
        while time.monotonic() < deadline:
            if process.poll() is not None:
                _, stderr = process.communicate()
                raise SystemExit(
                    f"the eval ended before it used the model ({process.returncode}):\n{stderr[-2000:]}"
                )
            seen = Observed()
            seen.add(self.data_dir, self.args.model)
            if any(process.pid in users for users in seen.users.values()):
                return
            time.sleep(0.1)
        process.kill()
        raise SystemExit(f"the eval did not use the model within {self.args.wait:g} s")


def run(args: argparse.Namespace, data_dir: Path) -> dict[str, Any]:
    bench = Bench(args, data_dir)
    bench.openheavy("model", "stop")
    print(f"data directory {data_dir}; model {args.model}", flush=True)
    first, _ = bench.ask()
    print(f"first ask (starts the shared server): {first:.1f} s", flush=True)
    alone, alone_result = bench.ask()
    alone_seen = Observed()
    alone_seen.add(data_dir, args.model)
    print(f"ask alone: {alone:.1f} s", flush=True)

    eval_started = time.perf_counter()
    evaluation = bench.start_eval(data_dir / "bench-eval")
    bench.wait_for_lease(evaluation)
    ask = subprocess.Popen(
        bench.ask_command(), env=bench.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    ask_started = time.perf_counter()
    during_seen = Observed()
    while ask.poll() is None:
        during_seen.add(data_dir, args.model)
        time.sleep(0.1)
    during = time.perf_counter() - ask_started
    stdout, stderr = ask.communicate()
    if ask.returncode != 0:
        raise SystemExit(f"the ask during the eval failed ({ask.returncode}):\n{stderr[-2000:]}")
    overlapped = evaluation.poll() is None
    status = bench.status()  # as a user would see it, while the server still runs
    _, eval_stderr = evaluation.communicate()
    eval_wall = time.perf_counter() - eval_started
    if evaluation.returncode != 0:
        raise SystemExit(f"the eval failed ({evaluation.returncode}):\n{eval_stderr[-2000:]}")

    servers = alone_seen.servers | during_seen.servers
    users = set().union(*during_seen.users.values()) if during_seen.users else set()
    shared = len(servers) == 1 and {evaluation.pid, ask.pid} <= users
    report = {
        "model": args.model,
        "question": args.question,
        "mode": args.mode,
        "eval": {
            "dataset": args.dataset,
            "modes": args.eval_modes,
            "limit": args.limit,
            "concurrency": args.concurrency,
            "wall_s": round(eval_wall, 1),
        },
        "first_ask_s": round(first, 1),
        "ask_alone_s": round(alone, 1),
        "ask_during_eval_s": round(during, 1),
        "ratio": round(during / alone, 2) if alone else None,
        "within_3x": during <= 3 * alone,
        "eval_still_running_when_ask_ended": overlapped,
        "llama_server_pids": sorted(servers),
        "shared_one_server": shared,
        "ask_tokens": alone_result["figures"].get("prompt_tokens", 0)
        + alone_result["figures"].get("completion_tokens", 0),
        "ask_during_eval_run_id": json.loads(stdout)["run_id"],
        "model_status": status,
    }
    print_table(report, eval_pid=evaluation.pid, ask_pid=ask.pid)
    if not args.keep_server:
        bench.openheavy("model", "stop")
    return report


def print_table(report: dict[str, Any], *, eval_pid: int, ask_pid: int) -> None:
    servers = ", ".join(str(p) for p in report["llama_server_pids"]) or "none seen"
    print()
    print(f"{'':<24}{'wall s':>8}")
    print(f"{'ask alone':<24}{report['ask_alone_s']:>8.1f}")
    print(f"{'ask during the eval':<24}{report['ask_during_eval_s']:>8.1f}")
    print(
        f"{'ratio':<24}{report['ratio']:>7.2f}x  (goal: within 3x: {'yes' if report['within_3x'] else 'NO'})"
    )
    print(f"{'eval':<24}{report['eval']['wall_s']:>8.1f}  ({report['eval']['limit']} items, "
          f"concurrency {report['eval']['concurrency']})")  # fmt: skip
    print(f"shared one llama-server: {'yes' if report['shared_one_server'] else 'NO'} "
          f"(llama-server pids {servers}; eval pid {eval_pid}, ask pid {ask_pid})")  # fmt: skip
    if not report["eval_still_running_when_ask_ended"]:
        print("note: the eval ended before the ask did; raise --limit for a full overlap")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.data_dir is not None:
        report = run(args, args.data_dir)
    else:
        with tempfile.TemporaryDirectory(prefix="bench-shared-server-") as tmp:
            report = run(args, Path(tmp))
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
