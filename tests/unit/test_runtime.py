"""Launch environment: torchrun, Slurm (srun without torchrun), and a plain single process."""

from __future__ import annotations

from megatron_octo.runtime.distributed import _first_slurm_host, launch_env


def test_torchrun_environment():
    le = launch_env({"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "MASTER_ADDR": "n1", "MASTER_PORT": "1234"})
    assert (le.rank, le.world_size, le.local_rank, le.master_addr, le.master_port, le.source) == \
        (3, 8, 1, "n1", 1234, "torchrun")


def test_slurm_environment_without_torchrun(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no scontrol: the nodelist is parsed here
    env = {"SLURM_PROCID": "5", "SLURM_NTASKS": "16", "SLURM_LOCALID": "5", "SLURM_JOB_ID": "4242",
           "SLURM_JOB_NODELIST": "gpu[07-08]"}
    le = launch_env(env)
    assert (le.rank, le.world_size, le.local_rank, le.source) == (5, 16, 5, "slurm")
    assert le.master_addr == "gpu07"
    assert le.master_port == 10000 + 4242 % 20000
    # torchrun inside an allocation wins over the Slurm task variables.
    assert launch_env({**env, "RANK": "0", "WORLD_SIZE": "2"}).source == "torchrun"


def test_single_process_and_one_task_allocation():
    assert launch_env({}).world_size == 1 and launch_env({}).source == "single"
    assert launch_env({"SLURM_PROCID": "0", "SLURM_NTASKS": "1"}).source == "single"


def test_nodelist_forms(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert _first_slurm_host("node[01-04,09],gpu7") == "node01"
    assert _first_slurm_host("host-a,host-b") == "host-a"
