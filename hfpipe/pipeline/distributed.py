"""One process or many: the Accelerator the runner uses, the checks on how hfpipe was launched, and
`hfpipe run --processes N`, which starts N processes through accelerate's launcher.

Launches that work: `hfpipe run RECIPE --processes N`, `accelerate launch [--multi_gpu] --num_processes N -m hfpipe
run RECIPE` and `torchrun --nproc_per_node N -m hfpipe run RECIPE`. On a machine without GPUs the processes talk
over gloo on the CPU (hfpipe turns that on itself; accelerate would otherwise leave each process alone).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from hfpipe.errors import RecipeError
from hfpipe.recipe.schema import UNSHARDED_ONLY, DistributedConfig, Recipe

if TYPE_CHECKING:
    from accelerate import Accelerator

# Where the processes of a `--processes` launch leave their exit codes for the parent to return: the launcher
# itself exits 1 whatever its workers' codes were.
EXIT_CODE_DIR_ENV = "HFPIPE_EXIT_CODE_DIR"
# The command line the user typed, when it is not the process's own (`--processes N` starts the processes with
# another one): what a message that says how to resume must repeat.
COMMAND_ENV = "HFPIPE_COMMAND"

T = TypeVar("T")

HOW_TO_LAUNCH = ("start N processes with `hfpipe run RECIPE --processes N`, `accelerate launch --multi_gpu "
                 "--num_processes N -m hfpipe run RECIPE` or `torchrun --nproc_per_node N -m hfpipe run RECIPE`")


def resolve_mixed_precision(setting: str, *, cpu: bool = False) -> str:
    """`auto`: bf16 on a CUDA device that supports it, full precision on a CPU.

    On a CPU with native bf16 (AMX), measured on the same machine in one session (README, "bf16 on a CPU"): the
    7.7M-parameter defaults train no faster in bf16 (0.84× fp32 with tight batches, 0.97× padded to multiples of
    16, the copy layer's float32 log-space math costing casts) and hold 1.3-2.4 GB against 1.0 GB; the 49M MiniLM
    warm start trains 1.33× faster. And a CPU without native bf16 emulates it, far slower than fp32. So `auto`
    keeps one precision on every CPU (the same recipe trains the same model on any of them); set
    `mixed_precision: bf16` (with `pad_to_multiple_of: 16`) for a large model on a CPU that has AMX."""
    if setting != "auto":
        return setting
    import torch

    if torch.cuda.is_available() and not cpu:
        return "bf16" if torch.cuda.is_bf16_supported() else "no"
    return "no"


def launched_world_size() -> int:
    """How many processes the launcher started (1 when there was no launcher)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def _has_device() -> bool:
    import torch

    accel = getattr(torch, "accelerator", None)
    if accel is not None and hasattr(accel, "is_available"):
        return bool(accel.is_available())
    return torch.cuda.is_available()


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def check_launch() -> None:
    """Refuse the launches that would silently train something else than asked."""
    if "WORLD_SIZE" not in os.environ and os.environ.get("MASTER_ADDR") and \
            os.environ.get("ACCELERATE_USE_CPU") == "True" and "ACCELERATE_MIXED_PRECISION" in os.environ:
        # accelerate's simple launcher sets MASTER_ADDR only when asked for several processes, yet starts one.
        raise RecipeError("this is a single process: `accelerate launch --cpu --num_processes N` starts ONE "
                          "process, not N", hint=HOW_TO_LAUNCH)
    for env, what in (("ACCELERATE_USE_FSDP", "FSDP"), ("ACCELERATE_USE_DEEPSPEED", "DeepSpeed"),
                      ("ACCELERATE_USE_MEGATRON_LM", "Megatron-LM")):
        if _flag(env):
            raise RecipeError(f"the launch asks for {what} ({env} is set, e.g. by an accelerate config). "
                              f"{UNSHARDED_ONLY}", hint="launch with an accelerate config whose distributed_type "
                                                        "is MULTI_GPU or MULTI_CPU, or with no config")


def from_main(accelerator: Accelerator, value: T) -> T:
    """The main process's value (a decision, its clock) on every process: one answer for all of them."""
    if accelerator.num_processes == 1:
        return value
    from accelerate.utils import broadcast_object_list

    return broadcast_object_list([value])[0]


def make_accelerator(recipe: Recipe) -> Accelerator:
    """The run's one Accelerator: N processes when launched as N (over gloo on a machine without GPUs), the
    recipe's mixed precision, accumulation, collective timeout and DDP settings."""
    from datetime import timedelta

    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs, InitProcessGroupKwargs, set_seed

    from hfpipe.runs.reporting import quiet_libraries

    check_launch()
    quiet_libraries()
    dist = recipe.distributed or DistributedConfig()
    world = launched_world_size()
    # Several processes and no GPU: accelerate would give every process a world of its own (each writing the same
    # run directory) unless told to use the CPU, which then runs them over gloo.
    cpu = world > 1 and not _has_device()
    find_unused = dist.find_unused_parameters
    if find_unused is None:
        find_unused = recipe.model.architecture == "encoder-decoder"
    accelerator = Accelerator(
        # Trackers need a logging folder now; the run directory is only named later (start_trackers moves it).
        log_with=list(recipe.train.report_to) or None, project_dir="." if recipe.train.report_to else None,
        cpu=cpu, mixed_precision=resolve_mixed_precision(recipe.train.mixed_precision, cpu=cpu),
        gradient_accumulation_steps=recipe.train.gradient_accumulation_steps,
        kwargs_handlers=[InitProcessGroupKwargs(timeout=timedelta(minutes=dist.timeout_minutes)),
                         DistributedDataParallelKwargs(find_unused_parameters=find_unused)])
    if accelerator.num_processes != world:
        raise RecipeError(f"the launcher started {world} processes but they did not join one run "
                          f"(accelerate sees {accelerator.num_processes})", hint=HOW_TO_LAUNCH)
    if str(accelerator.distributed_type).rsplit(".", 1)[-1] in ("FSDP", "DEEPSPEED", "MEGATRON_LM"):
        raise RecipeError(f"the launch set up {accelerator.distributed_type}. {UNSHARDED_ONLY}")
    set_seed(recipe.train.seed)
    return accelerator


def start_trackers(accelerator: Accelerator, recipe: Recipe, run_dir: Path) -> None:
    """Accelerate's experiment trackers (train.report_to), logging into <run>/trackers, with the resolved recipe
    as the run's configuration (flattened: trackers take scalar hyperparameters)."""
    accelerator.project_configuration.set_directories(str(run_dir))
    accelerator.project_configuration.logging_dir = str(run_dir / "trackers")

    from hfpipe.runs.history import flatten

    config = {k: v if isinstance(v, (int, float, str, bool)) else str(v)
              for k, v in flatten(recipe.model_dump(mode="json", by_alias=True)).items()}
    accelerator.init_trackers(run_dir.name, config=config)


def describe(accelerator: Accelerator) -> dict[str, Any]:
    """World size, backend and each process's device, for the manifest (a collective: call on every process)."""
    import torch

    device = accelerator.device
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
    devices = [f"{device} ({name})"]
    if accelerator.num_processes > 1:
        from accelerate.utils import gather_object

        devices = gather_object(devices)
    return {"world_size": accelerator.num_processes, "num_machines": int(os.environ.get("GROUP_WORLD_SIZE", "1")),
            "distributed_type": str(accelerator.distributed_type).rsplit(".", 1)[-1],
            "backend": accelerator.state.backend or None, "mixed_precision": str(accelerator.mixed_precision),
            "devices": devices}


# --------------------------------------------------------------------------------------------- --processes N
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))  # the cores this process may use (a container's limit)
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def launch_command(processes: int, child_args: list[str], dist: DistributedConfig | None,
                   config_dir: Path) -> tuple[list[str], dict[str, str]]:
    """accelerate's launcher command and environment for `processes` processes running `hfpipe CHILD_ARGS`.

    Without distributed.accelerate_config the launch gets a config file of its own (written in `config_dir`), so
    the user's default accelerate config (`accelerate config`: its gpu_ids, debug or FSDP settings) does not
    silently change what `--processes N` means."""
    cmd = [sys.executable, "-m", "hfpipe.pipeline.launcher"]
    env = dict(os.environ)
    # How long torch's launcher lets the processes finish their step and save a checkpoint after passing on a
    # SIGINT/SIGTERM before it kills them (its default, 30 s, is short for a large model's checkpoint).
    env.setdefault("TORCH_ELASTIC_SHUTDOWN_TIMEOUT", "300")
    if dist is not None and dist.accelerate_config:
        cmd += ["--config_file", dist.accelerate_config, "--num_processes", str(processes)]
        return cmd + ["-m", "hfpipe", *child_args], env
    import torch

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if 0 < gpus < processes:
        raise RecipeError(f"--processes {processes} but this machine has {gpus} GPU(s)",
                          hint=f"use --processes {gpus} or fewer, one process per GPU")
    if gpus == 0:
        env["ACCELERATE_USE_CPU"] = "1"
        # N processes share the cores; torch's launcher would give each one thread.
        env.setdefault("OMP_NUM_THREADS", str(max(1, _cores() // processes)))
    config = config_dir / "accelerate.yaml"
    config.write_text("compute_environment: LOCAL_MACHINE\ndistributed_type: MULTI_GPU\ngpu_ids: all\n"
                      f"num_processes: {processes}\nnum_machines: 1\nmachine_rank: 0\nmixed_precision: 'no'\n"
                      "use_cpu: false\nrdzv_backend: static\nsame_network: true\nmain_training_function: main\n")
    cmd += ["--config_file", str(config), "--num_processes", str(processes),
            "--main_process_port", str(_free_port())]
    return cmd + ["-m", "hfpipe", *child_args], env


def run_processes(processes: int, child_args: list[str], dist: DistributedConfig | None) -> int:
    """Run `hfpipe CHILD_ARGS` on `processes` processes; returns the main process's exit code (or, when it left
    none, the first other process's that failed).

    SIGINT and SIGTERM sent to this process are passed on once to the launcher, which passes them on to the
    processes: they finish the current step, save a checkpoint and exit 130 / 143. A second signal stops waiting
    and kills the launcher."""
    import shlex
    import signal

    if launched_world_size() > 1:
        raise RecipeError("--processes inside a launched process", hint="give the process count to the launcher "
                                                                        "or to --processes, not both")
    received: list[int] = []
    with tempfile.TemporaryDirectory(prefix="hfpipe-launch-") as tmp:
        cmd, env = launch_command(processes, child_args, dist, Path(tmp))
        env[EXIT_CODE_DIR_ENV] = tmp
        # The command to print for resuming is this one (with --processes), not the processes' own.
        env[COMMAND_ENV] = shlex.join(["hfpipe", *sys.argv[1:]])
        # A session of its own: a Ctrl-C in the terminal reaches the launcher once, through this process,
        # instead of twice (directly and forwarded), which torch's launcher would take for "stop at once".
        launcher = subprocess.Popen(cmd, env=env, start_new_session=True)

        def forward(signum: int, frame: object) -> None:
            received.append(signum)
            if len(received) == 1:
                launcher.send_signal(signum)
            else:
                launcher.kill()

        previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            returncode = launcher.wait()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        codes = {int(p.name.split(".")[1]): int(p.read_text() or 1) for p in Path(tmp).glob("exit-code.*")}
    if received and not codes.get(0):
        return 128 + received[0]
    if returncode == 0 and not received:
        return 0
    # The launcher stops every process when one fails and then exits 1: the processes' own codes tell why.
    if codes.get(0):
        return codes[0]
    return next((code for _, code in sorted(codes.items()) if code), 1)


def record_exit_code(code: int) -> None:
    """In a `--processes` launch, every process leaves its exit code for the parent."""
    folder = os.environ.get(EXIT_CODE_DIR_ENV)
    if folder:
        try:
            (Path(folder) / f"exit-code.{int(os.environ.get('RANK', '0'))}").write_text(str(code))
        except (OSError, ValueError):
            pass
