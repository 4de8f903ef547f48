"""Train three recurrent classifiers side by side: PyTorch's nn.LSTM, cellgrad's CellRNN("lstm")
(the same cell, generated kernels) and CellRNN("peephole_lstm") (a cell PyTorch does not have).

    python examples/train_digits.py                    # scikit-learn's 8x8 digits, read row by row
    python examples/train_digits.py --task adding      # the adding problem (Hochreiter & Schmidhuber)

Digits: each image is a sequence of 8 rows of 8 pixels; the last hidden state is classified into
10 digits. Adding: a sequence of (value, marker) pairs, two markers set; the target is the sum of
the two marked values, and a prediction within 0.1 counts as correct. Each epoch prints every
model's training loss, test accuracy and seconds; all three start from the same seed.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch import nn

from cellgrad.torch import CellRNN


def digits(limit=None, seed=0):
    from sklearn.datasets import load_digits     # pip install 'cellgrad[examples]'
    data = load_digits()
    x = (data.images / 16.0).astype(np.float32)   # (n, 8 rows, 8 pixels) in [0, 1]
    y = data.target.astype(np.int64)
    return _split(x, y, limit, seed)


def adding(n=4000, T=30, limit=None, seed=0):
    rng = np.random.default_rng(seed)
    values = rng.uniform(0, 1, (n, T)).astype(np.float32)
    markers = np.zeros((n, T), np.float32)
    for row in markers:
        row[rng.choice(T, 2, replace=False)] = 1
    x = np.stack([values, markers], axis=2)
    y = (values * markers).sum(axis=1, keepdims=True).astype(np.float32)
    return _split(x, y, limit, seed)


def _split(x, y, limit, seed):
    order = np.random.default_rng(seed).permutation(len(x))[:limit]
    x, y = torch.from_numpy(x[order]), torch.from_numpy(y[order])
    cut = int(0.8 * len(x))
    return (x[:cut], y[:cut]), (x[cut:], y[cut:])


class Classifier(nn.Module):
    """A recurrent layer (batch_first) and a linear readout of its last hidden state."""

    def __init__(self, rnn: nn.Module, hidden: int, outputs: int):
        super().__init__()
        self.rnn, self.readout = rnn, nn.Linear(hidden, outputs)

    def forward(self, x):
        _, (h_n, _) = self.rnn(x)
        return self.readout(h_n[-1])


def models(task, inputs, hidden, outputs, backend, seed):
    """The three models. CellRNN("lstm") starts from nn.LSTM's initial weights (from_torch), so
    the two differ only by rounding; the peephole LSTM draws its own (same seed, same law)."""
    torch.manual_seed(seed)
    lstm = Classifier(nn.LSTM(inputs, hidden, batch_first=True), hidden, outputs)
    same = Classifier(CellRNN.from_torch(lstm.rnn, backend=backend), hidden, outputs)
    same.readout.load_state_dict(lstm.readout.state_dict())
    torch.manual_seed(seed)
    peephole = Classifier(CellRNN("peephole_lstm", inputs, hidden, batch_first=True, backend=backend),
                          hidden, outputs)
    return {"nn.LSTM": lstm, 'CellRNN("lstm")': same, 'CellRNN("peephole_lstm")': peephole}


def evaluate(model, task, x, y):
    with torch.no_grad():
        out = model(x)
    if task == "digits":
        return float((out.argmax(dim=1) == y).float().mean())
    return float(((out - y).abs() < 0.1).float().mean())


def train(task="digits", epochs=10, hidden=32, batch=64, lr=1e-2, backend="numba", limit=None, seed=0,
          log=print):
    """Train the three models; return {model: (final test accuracy, mean seconds per epoch)}."""
    (x_train, y_train), (x_test, y_test) = digits(limit, seed) if task == "digits" else adding(limit=limit, seed=seed)
    outputs = 10 if task == "digits" else 1
    loss_fn = nn.CrossEntropyLoss() if task == "digits" else nn.MSELoss()
    built = models(task, x_train.shape[2], hidden, outputs, backend, seed)
    optimizers = {name: torch.optim.Adam(m.parameters(), lr=lr) for name, m in built.items()}
    times = {name: [] for name in built}
    log(f"{task}: {len(x_train)} training and {len(x_test)} test sequences of {x_train.shape[1]} steps, "
        f"hidden size {hidden}, backend {backend}")
    for epoch in range(1, epochs + 1):
        order = torch.randperm(len(x_train), generator=torch.Generator().manual_seed(seed + epoch))
        for name, model in built.items():
            start, total = time.perf_counter(), 0.0
            for k in range(0, len(order), batch):
                idx = order[k:k + batch]
                optimizers[name].zero_grad()
                loss = loss_fn(model(x_train[idx]), y_train[idx])
                loss.backward()
                optimizers[name].step()
                total += loss.item() * len(idx)
            times[name].append(time.perf_counter() - start)
            log(f"epoch {epoch:2d}  {name:26s} loss {total / len(order):.4f}  "
                f"test accuracy {evaluate(model, task, x_test, y_test):.3f}  {times[name][-1]:.2f} s")
    results = {name: (evaluate(m, task, x_test, y_test), float(np.mean(times[name][1:] or times[name])))
               for name, m in built.items()}
    log("final:")
    for name, (accuracy, seconds) in results.items():
        log(f"  {name:26s} test accuracy {accuracy:.3f}  {seconds:.2f} s per epoch")
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", choices=("digits", "adding"), default="digits")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--backend", choices=("numba", "numpy"), default="numba")
    parser.add_argument("--limit", type=int, default=None, help="use only this many sequences")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    # one thread in every pool, torch's and the BLAS the kernels call: on a small machine, pools
    # of several threads each fight over the cores and every small GEMM waits for them
    import scipy.linalg  # noqa: F401  loads the BLAS Numba's np.dot calls, so that the limit reaches it
    from threadpoolctl import threadpool_limits
    torch.set_num_threads(1)
    with threadpool_limits(1):
        return train(args.task, args.epochs, args.hidden, backend=args.backend, limit=args.limit,
                     seed=args.seed)


if __name__ == "__main__":
    main()
