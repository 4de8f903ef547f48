"""CellRNN under DistributedDataParallel: two processes (gloo, 127.0.0.1 only), each with half
of the batch, give the same gradients as one process over the whole batch. Bounded: both processes
have LIMIT seconds. Skipped without torch, except in CI (CI=true), where it fails."""

from __future__ import annotations

import os
import socket
import time
from datetime import timedelta

import pytest

if os.environ.get("CI") == "true":
    import torch            # CI installs torch: a missing one fails, never skips
else:
    torch = pytest.importorskip("torch")

import torch.distributed as dist  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402

from cellgrad.torch import CellRNN  # noqa: E402

T, N, D, H = 5, 6, 3, 4
LENGTHS = [5, 2, 4, 1, 3, 5]
LIMIT = 240   # seconds for both processes, start-up (imports) included


def model():
    torch.manual_seed(0)
    return CellRNN("peephole_lstm", D, H, num_layers=2, bidirectional=True, backend="numpy", dtype=torch.float64)


def batch():
    gen = torch.Generator().manual_seed(1)
    return torch.randn(T, N, D, generator=gen, dtype=torch.float64), torch.randn(N, generator=gen, dtype=torch.float64)


def loss_of(rnn, x, target, lengths):
    packed = torch.nn.utils.rnn.pack_padded_sequence(x, torch.tensor(lengths), enforce_sorted=False)
    _, (h_n, _) = rnn(packed)
    return ((h_n[-1].sum(dim=1) - target) ** 2).mean()   # a mean over the batch, as DDP averages


def worker(rank, port, out_dir):
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2,
                            timeout=timedelta(seconds=60))
    try:
        ddp = torch.nn.parallel.DistributedDataParallel(model())
        x, target = batch()
        half = slice(rank * N // 2, (rank + 1) * N // 2)
        loss_of(ddp, x[:, half], target[half], LENGTHS[half]).backward()
        torch.save({n: p.grad for n, p in ddp.module.named_parameters()}, os.path.join(out_dir, f"{rank}.pt"))
    finally:
        dist.destroy_process_group()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_give_the_gradients_of_one(tmp_path):
    context = mp.start_processes(worker, args=(free_port(), str(tmp_path)), nprocs=2, join=False,
                                 start_method="spawn")
    deadline = time.monotonic() + LIMIT
    while not context.join(timeout=max(0.0, deadline - time.monotonic())):   # False until both ended
        if time.monotonic() >= deadline:
            for process in context.processes:
                process.kill()
            pytest.fail(f"the two processes did not finish in {LIMIT} s")
    rnn = model()
    x, target = batch()
    loss_of(rnn, x, target, LENGTHS).backward()
    for rank in range(2):
        grads = torch.load(tmp_path / f"{rank}.pt")
        for name, p in rnn.named_parameters():
            assert torch.allclose(grads[name], p.grad, rtol=1e-10, atol=1e-13), (rank, name)
