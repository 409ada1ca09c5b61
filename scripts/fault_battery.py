"""The fault battery: optcli's commands killed, signalled, starved of disk, fed damaged records, bad
input and hostile files, each outcome judged against an undamaged reference run. It prints the table
that issue 33 asks for, a row per category:

    python scripts/fault_battery.py [--out DIR] [--jobs 2] [--only CATEGORY]

Every case is a real `python -m optcli` process. An outcome is one of:
- `clean`: what optcli promises (a resume bit-exact with the reference, a refusal in words naming the
  file or key with exit 1 or 2, exit 130 on a signal with nothing half-written);
- `data lost`: something written before the fault is gone or can no longer be used (a run that
  cannot resume, a run folder removed, a finished result changed);
- `silently wrong`: exit 0 with a result that differs from the reference, or a damaged record used
  without a word;
- `internal error`: a traceback, an "internal error", a death by signal (SIGABRT) or an exit code
  outside 0, 1, 2 and 130;
- `hang`: no end within the case's time limit (the process group is then killed).

Seeded (the kill times come from `random.Random(SEED)`), so a rerun draws the same cases; the timings
under them are the machine's.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
SEED = 33
VERDICTS = ["clean", "data lost", "silently wrong", "internal error", "hang"]
CASE_LIMIT_S = 240.0

TRAIN = {  # a few seconds of training with a checkpoint per epoch, and a validation split
    "name": "battery",
    "seed": 1,
    "device": "cpu",
    "model": {"name": "mlp", "hidden": [32]},
    "data": {
        "name": "teacher",
        "samples": 640,
        "features": 8,
        "classes": 3,
        "batch_size": 32,
        "val_fraction": 0.25,
    },
    "optimizer": {"name": "adam", "lr": 0.003},
    "scheduler": {"name": "step", "step_size": 10, "gamma": 0.5},
    "train": {"epochs": 400, "checkpoint_every": 1},
}
COMPARE = {
    "base": {**TRAIN, "train": {"epochs": 40, "checkpoint_every": 1}},
    "seeds": [0, 1],
    "metric": "final_loss",
    "runs": {
        "sgd": {"optimizer": {"name": "sgd", "lr": 0.01, "momentum": 0.9}},
        "adam": {"optimizer": {"name": "adam", "lr": 0.003}},
        "rmsprop": {"optimizer": {"name": "rmsprop", "lr": 0.003}},
    },
}


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: str
    stderr: str
    hung: bool


@dataclass(frozen=True)
class Outcome:
    category: str
    case: str
    verdict: str
    detail: str = ""


def optcli(
    *arguments: object,
    cwd: Path,
    signal_after: float | None = None,
    signum: int = signal.SIGKILL,
    group: bool = False,
    file_limit: int | None = None,
    when: Callable[[], bool] | None = None,
) -> Result:
    """`python -m optcli ARGUMENTS` in a session of its own; `signum` sent `signal_after` seconds after
    `when()` first holds (to the whole group if `group`); every write past `file_limit` bytes refused."""

    def limit() -> None:
        # As a terminal starts a command: SIGINT and SIGHUP at their defaults, even when this script
        # runs under nohup or in a shell's background (which ignore them, and an ignored signal stays
        # ignored in the children, optcli included, as Unix intends).
        for name in ("SIGINT", "SIGHUP"):
            signal.signal(getattr(signal, name), signal.SIG_DFL)
        if file_limit is not None:
            import resource

            resource.setrlimit(resource.RLIMIT_FSIZE, (file_limit, file_limit))

    process = subprocess.Popen(
        [sys.executable, "-m", "optcli", *map(str, arguments)],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=limit,
        env={**os.environ, "PYTHONPATH": str(REPO), "OPTCLI_CACHE": str(cwd / "cache")},
    )
    if signal_after is not None:
        deadline = time.monotonic() + CASE_LIMIT_S
        while when is not None and not when() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(signal_after)
        if process.poll() is None:
            (os.killpg if group else os.kill)(process.pid, signum)
    try:
        stdout, stderr = process.communicate(timeout=CASE_LIMIT_S)
        return Result(process.returncode, stdout, stderr, hung=False)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        return Result(process.returncode, stdout, stderr, hung=True)


def failure(result: Result, allowed: tuple[int, ...] = (0, 1, 2, 130)) -> tuple[str, str] | None:
    """The verdict a result earns by itself (a hang, an internal error) and why, or None."""
    if result.hung:
        return "hang", f"no end within {CASE_LIMIT_S:.0f} s"
    if "Traceback" in result.stderr or "internal error" in result.stderr:
        return "internal error", result.stderr[-300:]
    if result.returncode not in allowed:
        return "internal error", f"exit {result.returncode}: {result.stderr[-300:]}"
    return None


def _completed(run: Path) -> bool:
    """The run's summary says it completed (a kill that came after it was written, before the exit)."""
    try:
        return json.loads((run / "summary.json").read_text()).get("status") == "completed"
    except (OSError, ValueError):
        return False


def without_times(path: Path) -> list[list[str]]:
    """A CSV's rows without its time columns (names ending in `_s`)."""
    lines = [line.split(",") for line in path.read_text().splitlines()]
    keep = [index for index, name in enumerate(lines[0]) if not name.endswith("_s")]
    return [[row[index] for index in keep] for row in lines]


def hidden_leftovers(folder: Path) -> list[Path]:
    """Temporary files and folders a command left (`.NAME.PID-….tmp`, `.export-…`)."""
    return [path for path in folder.rglob(".*") if path.name != ".optcli.lock" and "cache" not in path.parts]


class Battery:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.random = random.Random(SEED)
        (root / "train.yaml").write_text(yaml.safe_dump(TRAIN))
        (root / "compare.yaml").write_text(yaml.safe_dump(COMPARE))
        reference = optcli("train", "train.yaml", "--out", "reference", "--quiet", cwd=root)
        assert reference.returncode == 0, reference.stderr
        self.run = next((root / "reference").glob("*/*"))
        self.metrics = without_times(self.run / "metrics.csv")
        compared = optcli("compare", "compare.yaml", "--out", "reference", "--quiet", cwd=root)
        assert compared.returncode == 0, compared.stderr
        self.comparison = next((root / "reference").glob("compare-*/*"))
        self.results = without_times(self.comparison / "results.csv")
        evaluated = optcli("evaluate", self.run, "--out", root / "reference.json", cwd=root)
        assert evaluated.returncode == 0, evaluated.stderr
        self.evaluation = json.loads((root / "reference.json").read_text())

    def case_folder(self) -> Path:
        return Path(tempfile.mkdtemp(dir=self.root, prefix="case-"))

    # kill -9, and every stop signal, during train, resumed to the end

    def killed_train(self, signum: int, delay: float, group: bool) -> tuple[str, str]:
        folder = self.case_folder()
        shutil.copy(self.root / "train.yaml", folder)
        started = lambda: any(folder.glob("runs/*/*/metrics.csv"))  # noqa: E731
        result = optcli("train", "train.yaml", "--out", "runs", "--quiet", cwd=folder, signal_after=delay,
                        signum=signum, group=group, when=started)  # fmt: skip
        if signum != signal.SIGKILL and (judged := failure(result, (0, 1, 2, 130, -signum))):
            return judged
        runs = list(folder.glob("runs/*/*"))
        if not runs:
            return "clean", "stopped before the run folder was made"
        if result.returncode == 0 or _completed(runs[0]):
            return self.same_metrics(runs[0], f"finished before the signal (exit {result.returncode})")
        resumed = optcli("resume", runs[0], "--quiet", cwd=folder)
        if judged := failure(resumed):
            return judged
        if resumed.returncode != 0:
            return "data lost", f"resume exit {resumed.returncode}: {resumed.stderr[-300:]}"
        return self.same_metrics(runs[0], "resumed")

    def same_metrics(self, run: Path, what: str) -> tuple[str, str]:
        if without_times(run / "metrics.csv") != self.metrics:
            return "silently wrong", f"{what}: metrics.csv differs from the reference run"
        return "clean", f"{what}, bit-exact"

    # kill -9, and every stop signal, during compare (--jobs 1 and 2), resumed to the end

    def killed_compare(self, signum: int, delay: float, group: bool, jobs: int) -> tuple[str, str]:
        folder = self.case_folder()
        for name in ("train.yaml", "compare.yaml"):
            shutil.copy(self.root / name, folder)
        started = lambda: any(folder.glob("out/compare-*/*/*/metrics.csv"))  # noqa: E731
        result = optcli("compare", "compare.yaml", "--out", "out", "--quiet", "--jobs", jobs, cwd=folder,
                        signal_after=delay, signum=signum, group=group, when=started)  # fmt: skip
        if signum != signal.SIGKILL and (judged := failure(result, (0, 1, 2, 130, -signum))):
            return judged
        comparisons = list(folder.glob("out/compare-*/*"))
        if not comparisons:
            return "clean", "stopped before the comparison's folder was made"
        if result.returncode != 0:
            resumed = optcli("compare", "--resume", comparisons[0], "--quiet", cwd=folder)
            if judged := failure(resumed):
                return judged
            if resumed.returncode != 0:
                return "data lost", f"compare --resume exit {resumed.returncode}: {resumed.stderr[-300:]}"
        if without_times(comparisons[0] / "results.csv") != self.results:
            return "silently wrong", "results.csv differs from the reference comparison"
        return "clean", "resumed, results equal" if result.returncode else "finished before the signal"

    # stop signals during predict, evaluate and export: exit 130, nothing half-written

    def signalled_use(self, command: str, signum: int, delay: float, group: bool) -> tuple[str, str]:
        folder = self.case_folder()
        arguments = {
            "predict": ["predict", self.run, self.root / "many_inputs.csv", "--out", folder / "p.csv"],
            "evaluate": ["evaluate", self.run, "--out", folder / "e.json"],
            "export": ["export", self.run, "--format", "exported", "--out", folder / "m.pt2"],
        }[command]
        result = optcli(*arguments, cwd=folder, signal_after=delay, signum=signum, group=group)
        # Ended by the very signal sent (the shell's status 128+N, as for exit 130): where its work is
        # whole, the signal came as the interpreter tore itself down, when Python has given the
        # signals back to their default action; where nothing was written, before it began.
        if judged := failure(result, (0, 130, -signum)):
            return judged
        output = next(
            (Path(argument) for argument in arguments if str(argument).startswith(str(folder))), None
        )
        whole = output is not None and output.is_file() and result.returncode in (0, -signum)
        if whole and command == "predict":
            whole = len((output or folder).read_text().splitlines()) == 200_001  # (a header and every row)
        if leftovers := hidden_leftovers(folder) + hidden_leftovers(self.run):
            return "data lost", f"left {', '.join(path.name for path in leftovers)}"
        if result.returncode == -signum:
            if whole:
                return (
                    "clean",
                    "its work done and written, then ended by the signal at the interpreter's exit",
                )
            if output is not None and output.exists():
                return "data lost", f"ended by the signal with {output.name} half-written"
            return "clean", "ended by the signal before it had written anything"
        if result.returncode == 0 and not whole:
            return "silently wrong", "exit 0 without its whole output"
        return "clean", f"exit {result.returncode}"

    # damaged records: each file of a finished run, damaged in a few ways, then used

    def damaged_run(self, name: str, damage: str, command: str) -> tuple[str, str]:
        folder = self.case_folder()
        run = folder / "run"
        shutil.copytree(self.run, run)
        target = run / name
        size = target.stat().st_size
        if damage == "deleted":
            target.unlink()
        elif damage == "truncated":
            with target.open("r+b") as stream:
                stream.truncate(size // 2)
        elif damage.startswith("byte"):
            offset = int(damage.split()[1])
            data = bytearray(target.read_bytes())
            data[offset % size] ^= 0x5A
            target.write_bytes(bytes(data))
        elif damage == "edited":
            edit_a_value(target)
        arguments = {
            "evaluate": ["evaluate", run, "--out", folder / "e.json"],
            "predict": ["predict", run, self.root / "reference_inputs.csv", "--out", folder / "p.csv"],
            "resume": resumed_longer(run, 1),
        }[command]  # fmt: skip
        result = optcli(*arguments, cwd=folder)
        if judged := failure(result):
            return judged
        if result.returncode != 0:
            return "clean", f"refused (exit {result.returncode}): {result.stderr.strip()[-200:]}"
        if command == "evaluate":
            evaluation = json.loads((folder / "e.json").read_text())
            if evaluation.get("metrics") != self.evaluation.get("metrics"):
                return "silently wrong", "exit 0 with other metrics than the undamaged run's"
        if command == "predict" and (folder / "p.csv").read_text() != self.predictions_of_inputs():
            return "silently wrong", "exit 0 with other predictions than the undamaged run's"
        if command == "resume":
            rows = without_times(run / "metrics.csv")
            if rows[: len(self.metrics)] != self.metrics:
                return (
                    "silently wrong",
                    "exit 0, and the run's metrics.csv no longer holds the reference rows",
                )
        return "clean", "used as it was (exit 0), with the reference's result" + (
            f"; said: {result.stderr.strip()[:160]}" if result.stderr.strip() else ""
        )

    def damaged_comparison(self, name: str, damage: str) -> tuple[str, str]:
        """A comparison with one run still to do, a record damaged, then compare --resume."""
        folder = self.case_folder()
        directory = folder / "comparison"
        shutil.copytree(self.comparison, directory)
        shutil.rmtree(directory / "rmsprop-seed1")
        target = directory / name
        data = bytearray(target.read_bytes())
        if damage == "truncated":
            del data[len(data) // 2 :]
        elif damage.startswith("byte"):
            data[int(damage.split()[1]) % len(data)] ^= 0x5A
        target.write_bytes(bytes(data))
        if damage == "edited":
            edit_a_value(target)
        elif damage == "deleted":
            target.unlink()
        result = optcli("compare", "--resume", directory, "--quiet", cwd=folder)
        if judged := failure(result):
            return judged
        if result.returncode != 0:
            return "clean", f"refused (exit {result.returncode}): {result.stderr.strip()[-200:]}"
        if without_times(directory / "results.csv") != self.results:
            return "silently wrong", "exit 0 with results that differ from the reference comparison"
        return "clean", "resumed (exit 0), results equal the reference's"

    def predictions_of_inputs(self) -> str:
        return (self.root / "reference_predictions.csv").read_text()

    def prepare_inputs(self) -> None:
        header = ",".join(self.feature_names())
        generator = random.Random(1)
        rows = [",".join(f"{generator.gauss(0, 1):.4f}" for _ in range(8)) for _ in range(50)]
        (self.root / "reference_inputs.csv").write_text("\n".join([header, *rows]) + "\n")
        # 200,000 rows: a few seconds to predict, for the signals to land in
        (self.root / "many_inputs.csv").write_text("\n".join([header, *(rows * 4000)]) + "\n")
        predicted = optcli("predict", self.run, self.root / "reference_inputs.csv", "--out",
                           self.root / "reference_predictions.csv", cwd=self.root)  # fmt: skip
        assert predicted.returncode == 0, predicted.stderr

    def feature_names(self) -> list[str]:
        data = json.loads((self.run / "data.json").read_text())
        return list(data.get("feature_names") or [f"x{index}" for index in range(8)])

    # a full disk (a file-size limit) under every command that writes

    def full_disk(self, command: str, limit: int) -> tuple[str, str]:
        folder = self.case_folder()
        for name in ("train.yaml", "compare.yaml"):
            shutil.copy(self.root / name, folder)
        run = folder / "run"
        shutil.copytree(self.run, run)
        arguments = {
            "train": ["train", "train.yaml", "--out", "runs", "--quiet"],
            "resume": resumed_longer(run, 3),
            "compare": ["compare", "compare.yaml", "--out", "out", "--quiet"],
            "predict": ["predict", run, self.root / "reference_inputs.csv", "--out", folder / "p.csv"],
            "evaluate": ["evaluate", run, "--out", folder / "e.json"],
            "export torchscript": ["export", run, "--format", "torchscript"],
            "export onnx": ["export", run, "--format", "onnx"],
            "find-lr": ["find-lr", "train.yaml", "--out", "lr"],
        }[command]  # fmt: skip
        before = {
            path: path.read_bytes() for path in run.rglob("*") if path.is_file() and path.suffix != ".lock"
        }
        result = optcli(*arguments, cwd=folder, file_limit=limit)
        if judged := failure(result):
            return judged
        if result.returncode not in (0, 1):
            return "internal error", f"exit {result.returncode}: {result.stderr[-300:]}"
        if result.returncode == 1 and "No space" not in result.stderr and "too large" not in result.stderr:
            return "silently wrong", f"exit 1 without naming the cause: {result.stderr[-200:]}"
        if command == "resume":
            if without_times(run / "metrics.csv")[: len(self.metrics)] != self.metrics:
                return "data lost", "the run's metrics.csv lost reference rows"
        else:
            changed = [
                path.name for path, data in before.items() if not path.exists() or path.read_bytes() != data
            ]
            if changed:
                return "data lost", f"changed {changed}"
        if leftovers := [path for path in hidden_leftovers(folder) if path.suffix == ".tmp"]:
            return "data lost", f"left {[path.name for path in leftovers]}"
        return "clean", f"exit {result.returncode}" + (
            f": {result.stderr.strip()[-160:]}" if result.returncode else ""
        )

    # bad input: mutated configs and command lines; exit 2 with nothing written, or a valid run

    def bad_config(self, key: str, value: object) -> tuple[str, str]:
        folder = self.case_folder()
        config = json.loads(json.dumps(TRAIN))
        config["train"]["epochs"] = 1
        section, _, name = key.partition(".")
        if name:
            config.setdefault(section, {})[name] = value
        else:
            config[section] = value
        (folder / "bad.yaml").write_text(yaml.safe_dump(config, allow_unicode=True))
        result = optcli("train", "bad.yaml", "--out", "runs", "--quiet", cwd=folder)
        if judged := failure(result):
            return judged
        if result.returncode == 2:
            if any((folder / "runs").glob("*/*")):
                return "data lost", "exit 2, yet a run folder was written"
            if section not in result.stderr:
                return "silently wrong", f"exit 2 without naming the key: {result.stderr[-200:]}"
            return "clean", result.stderr.strip()[:160]
        if result.returncode == 1:
            return "clean", f"a training failure, said: {result.stderr.strip()[:160]}"
        return "clean", "accepted and trained"

    # hostile files and names

    def hostile(self, what: str) -> tuple[str, str]:
        folder = self.case_folder()
        shutil.copy(self.root / "train.yaml", folder)
        if what == "suite workload escaping its folder":
            suite = {"workloads": {"../../../escaped": {"compare": "compare.yaml"}}, "seeds": [0]}
            shutil.copy(self.root / "compare.yaml", folder)
            (folder / "suite.yaml").write_text(yaml.safe_dump(suite))
            result = optcli("compare", "suite.yaml", "--out", folder / "a" / "b", "--quiet", cwd=folder)
            escaped = list(self.root.parent.rglob("escaped")) if self.root.parent != Path("/") else []
            if escaped:
                return "data lost", f"wrote {escaped[0]}"
            return failure(result) or ("clean", result.stderr.strip()[-160:])
        if what == "pickle payload in last.pt":
            import pickle

            run = folder / "run"
            shutil.copytree(self.run, run)
            marker = folder / "pwned"

            class Payload:
                def __reduce__(self) -> tuple[object, tuple[str]]:
                    return (os.system, (f"touch {marker}",))

            import torch

            torch.save({"payload": Payload()}, run / "checkpoints" / "last.pt", pickle_module=pickle)
            result = optcli("resume", run, "--quiet", cwd=folder)
            if marker.exists():
                return "data lost", "the pickle ran"
            return failure(result) or ("clean", result.stderr.strip()[-160:])
        if what == "YAML bomb":
            bomb = 'a: &a ["x","x","x","x","x","x","x","x","x"]\n'
            for index in range(1, 9):
                bomb += (
                    f"{chr(97 + index)}: &{chr(97 + index)} [" + ",".join([f"*{chr(96 + index)}"] * 9) + "]\n"
                )
            (folder / "bomb.yaml").write_text(bomb)
            result = optcli("check", "bomb.yaml", cwd=folder)
            if result.returncode == 0:
                return "silently wrong", "a YAML bomb was accepted"
            return failure(result) or ("clean", result.stderr.strip()[-160:])
        if what == "symlinked checkpoints folder":
            run = folder / "run"
            shutil.copytree(self.run, run)
            outside = folder / "outside"
            shutil.move(run / "checkpoints", outside)
            (run / "checkpoints").symlink_to(outside, target_is_directory=True)
            result = optcli(*resumed_longer(run, 40), cwd=folder)
            if result.returncode == 0:
                return "silently wrong", "resumed through a symbolic link"
            return failure(result) or ("clean", result.stderr.strip()[-160:])
        if what == "NUL in name":
            config = dict(TRAIN, name="bad\x00name", train={"epochs": 1})
            (folder / "nul.yaml").write_text(yaml.safe_dump(config))
            result = optcli("train", "nul.yaml", "--out", "runs", "--quiet", cwd=folder)
            return failure(result) or ("clean", result.stderr.strip()[-160:])
        raise ValueError(what)

    # concurrency: two writers of one run, one comparison

    def two_writers(self, command: str) -> tuple[str, str]:
        folder = self.case_folder()
        for name in ("train.yaml", "compare.yaml"):
            shutil.copy(self.root / name, folder)
        if command == "resume":
            run = folder / "run"
            shutil.copytree(self.run, run)
            arguments = resumed_longer(run, 40)
        else:
            optcli("compare", "compare.yaml", "--out", "out", "--quiet", cwd=folder, signal_after=0.5,
                   signum=signal.SIGKILL, when=lambda: any(folder.glob("out/compare-*/*/*/metrics.csv")))  # fmt: skip
            arguments = ["compare", "--resume", next(folder.glob("out/compare-*/*")), "--quiet"]
        with ThreadPoolExecutor(2) as pool:
            results = list(pool.map(lambda _: optcli(*arguments, cwd=folder), range(2)))
        for result in results:
            if judged := failure(result):
                return judged
        codes = sorted(result.returncode for result in results)
        if codes == [0, 0]:
            pass  # one after the other, as the lock allows
        elif (
            codes != [0, 2] or "another optcli process" not in max(results, key=lambda r: r.returncode).stderr
        ):
            return "silently wrong", f"exit codes {codes}"
        if command == "resume":
            rows = without_times(folder / "run" / "metrics.csv")
            if rows[: len(self.metrics)] != self.metrics or len(rows) != len(set(map(tuple, rows))):
                return "silently wrong", "metrics.csv written twice or changed"
        elif without_times(next(folder.glob("out/compare-*/*")) / "results.csv") != self.results:
            return "silently wrong", "results.csv differs from the reference comparison"
        return "clean", f"exit codes {codes}"

    def cases(self) -> Iterator[tuple[str, str, Callable[[], tuple[str, str]]]]:
        stops = [signal.SIGKILL, signal.SIGINT, signal.SIGTERM, signal.SIGHUP]
        for index in range(40):
            signum, group = stops[index % 4], index % 8 >= 4
            delay = round(self.random.uniform(0.0, 4.0), 2)
            name = f"{signal.Signals(signum).name}{' to the group' if group else ''} after {delay}s"
            category = "kill -9" if signum == signal.SIGKILL else "signals"
            yield category, f"train: {name}", lambda s=signum, d=delay, g=group: self.killed_train(s, d, g)
        for index in range(48):
            signum, group, jobs = stops[index % 4], index % 8 >= 4, 1 + (index // 8) % 2
            delay = round(self.random.uniform(0.0, 4.0), 2)
            name = f"compare --jobs {jobs}: {signal.Signals(signum).name}{' to the group' if group else ''} after {delay}s"
            category = "kill -9" if signum == signal.SIGKILL else "signals"
            yield category, name, lambda s=signum, d=delay, g=group, j=jobs: self.killed_compare(s, d, g, j)
        for command in ("predict", "evaluate", "export"):
            for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                for group in (False, True):
                    delay = round(self.random.uniform(1.0, 3.0), 2)
                    name = f"{command}: {signal.Signals(signum).name}{' to the group' if group else ''} after {delay}s"
                    yield (
                        "signals",
                        name,
                        lambda c=command, s=signum, d=delay, g=group: self.signalled_use(c, s, d, g),
                    )
        files = ["checkpoints/last.pt", "checkpoints/best.pt", "config.yaml", "data.json", "summary.json",
                 "metrics.csv", "epochs.csv"]  # fmt: skip
        for name in files:
            for damage in ("deleted", "truncated", "byte 100", "byte -30", "byte -200", "edited"):
                if damage == "edited" and not name.endswith((".yaml", ".json", ".csv")):
                    continue
                for command in ("evaluate", "predict", "resume"):
                    yield (
                        "damaged records",
                        f"{name} {damage}, then {command}",
                        (lambda n=name, d=damage, c=command: self.damaged_run(n, d, c)),
                    )
        for name in ("comparison.json", "adam-seed0/summary.json", "adam-seed0/epochs.csv", "sgd-seed1/metrics.csv",
                     "adam-seed1/checkpoints/last.pt"):  # fmt: skip
            for damage in ("byte 40", "byte -60", "truncated", "edited", "deleted"):
                if damage == "edited" and name.endswith(".pt"):
                    continue
                yield (
                    "damaged records",
                    f"comparison: {name} {damage}, then compare --resume",
                    (lambda n=name, d=damage: self.damaged_comparison(n, d)),
                )
        for command in ("train", "resume", "compare", "predict", "evaluate", "export torchscript", "export onnx",
                        "find-lr"):  # fmt: skip
            for limit in (1024, 8192, 40000):
                yield (
                    "full disk",
                    f"{command} with files limited to {limit} bytes",
                    (lambda c=command, lim=limit: self.full_disk(c, lim)),
                )
        bad: list[tuple[str, object]] = [
            ("data.samples", 1e11), ("data.features", 10**9), ("model.hidden", [10**10]), ("data.samples", -3),
            ("data.batch_size", 0), ("optimizer.lr", "fast"), ("optimizer.lr", [0.001]), ("optimizer.lr", -1),
            ("optimizer.name", "adamm"), ("optimizer.betas", [0.9]), ("scheduler.name", "cosine_annealing"),
            ("scheduler.step_size", "two"), ("train.epochs", 0), ("train.epochs", 2.5), ("train.bogus", 1),
            ("loss", {"name": "cross_entropy", "reduction": "none"}), ("loss", {"name": "cross_entropy", "reduction": "sum"}),
            ("clip.max_norm", -1), ("model.name", "file:missing.py:Net"), ("data.name", "csv"),
            ("seed", "zero"), ("device", "tpu"), ("output.dir", "/proc/forbidden"), ("model.hidden", "32"),
            ("data.val_fraction", 1.5), ("data.val_fraction", 0.999), ("optimizer", None), ("train.threads", -2),
            ("name", "../escape"), ("name", "a" * 300),
        ]  # fmt: skip
        for key, value in bad:
            yield "bad input", f"{key}: {value!r}"[:80], lambda k=key, v=value: self.bad_config(k, v)
        for what in ("suite workload escaping its folder", "pickle payload in last.pt", "YAML bomb",
                     "symlinked checkpoints folder", "NUL in name"):  # fmt: skip
            yield "hostile files", what, lambda w=what: self.hostile(w)
        for command in ("resume", "compare --resume"):
            for round_ in range(3):
                yield (
                    "concurrency",
                    f"two {command} at once ({round_ + 1})",
                    lambda c=command: self.two_writers(c.split()[0]),
                )


def resumed_longer(run: Path, epochs: int) -> list[object]:
    """`optcli resume RUN` past the reference run's end, by `epochs` (a completed run is otherwise
    refused for having nothing to do)."""
    more = f"train.epochs={TRAIN['train']['epochs'] + epochs}"
    return ["resume", run, "--set", more, "--allow-changes", "--quiet"]


def edit_a_value(path: Path) -> None:
    """A plausible hand edit: the first number in the file changed a little."""
    text = path.read_text()
    for index, character in enumerate(text):
        if character.isdigit() and index > 0 and text[index - 1] in " :,[\n":
            text = text[:index] + str((int(character) + 1) % 10) + text[index + 1 :]
            break
    path.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="keep the cases' folders here")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--only", default=None, help="one category")
    parser.add_argument("--json", type=Path, default=None, help="write every outcome here")
    options = parser.parse_args()
    root = options.out or Path(tempfile.mkdtemp(prefix="optcli-battery-"))
    root.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    battery = Battery(root.resolve())
    battery.prepare_inputs()
    cases = [case for case in battery.cases() if options.only in (None, case[0])]

    def run(case: tuple[str, str, Callable[[], tuple[str, str]]]) -> Outcome:
        category, name, body = case
        try:
            verdict, detail = body()
        except Exception as error:  # the battery's own failure: counted, never hidden
            verdict, detail = "internal error", f"battery: {type(error).__name__}: {error}"
        outcome = Outcome(category, name, verdict, detail)
        print(f"[{verdict:>14}] {category}: {name}: {detail[:200]}", flush=True)
        return outcome

    with ThreadPoolExecutor(options.jobs) as pool:
        outcomes = list(pool.map(run, cases))
    table: dict[str, Counter[str]] = defaultdict(Counter)
    for outcome in outcomes:
        table[outcome.category][outcome.verdict] += 1
    print(
        f"\n{len(outcomes)} cases in {time.monotonic() - started:.0f} s (python scripts/fault_battery.py)\n"
    )
    print("| category | cases | " + " | ".join(VERDICTS) + " |")
    print("|---|---:|" + "---:|" * len(VERDICTS))
    for category, counts in [*table.items(), ("all", sum(table.values(), Counter()))]:
        print(
            f"| {category} | {sum(counts.values())} | " + " | ".join(str(counts[v]) for v in VERDICTS) + " |"
        )
    for outcome in outcomes:
        if outcome.verdict != "clean":
            print(f"- {outcome.verdict}: {outcome.category}: {outcome.case}: {outcome.detail}")
    if options.json:
        options.json.write_text(json.dumps([outcome.__dict__ for outcome in outcomes], indent=2) + "\n")
    if options.out is None:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
