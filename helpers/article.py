"""The source article's code, reproduced faithfully so the notebooks can *show*
its errors (see curriculum.md, "Errata"). Nothing here is a recommended way to
prune or distil; the kit's real methods live in the other modules.

The article trains a 784-128-10 MLP (``fc1``, ``fc2``) with plain SGD
(lr 0.01, batch 64) through ``DataLoader`` + ``ToTensor``, then:

* "prunes" ``fc1`` with a shrink step that zeroes no weight (and uses the very
  same code for hard and soft pruning);
* computes a ``threshold`` it never uses;
* "distils" by computing the teacher's output and never using it;
* builds its test loader with ``train=True``; never imports ``torchvision``.
"""
from __future__ import annotations

import torch
from PIL import Image
from torch import nn

from ._util import check_float, check_int, import_torchvision
from .data import Dataset, batches

# The article's data-loading line, verbatim: it names torchvision, which the
# article never imports, and its *test* loader passes train=True as well.
LOADER_LINE = ("test_loader = torch.utils.data.DataLoader(torchvision.datasets.MNIST("
               "root='./data', train=True, download=True, "
               "transform=torchvision.transforms.ToTensor()), batch_size=64, shuffle=True)")

# Its pruning step, identical under "# 剪枝" (hard) and "# 软剪枝" (soft).
PRUNING_STEP = """\
pruning_lambda = 0.01
threshold = 1 / (pruning_lambda * net.fc1.weight.data.abs().mean())
for param in net.fc1.weight.data:
    param.add_(-pruning_lambda * torch.sign(param).mul_(param.abs().div_(param.abs().max())))"""


def unused_threshold(weight: torch.Tensor, lam: float = 0.01) -> float:
    """The article's ``threshold = 1 / (lam * mean|w|)`` (which it never uses)."""
    check_float("lam", lam, 0.0, low_open=True)
    return (1 / (lam * weight.abs().mean())).item()


@torch.no_grad()
def shrink_step_(weight: torch.Tensor, lam: float = 0.01) -> torch.Tensor:
    """Apply the article's "pruning" step to ``weight`` in place; return it.

    Row by row it adds ``-lam * sign(w) * |w| / max|w|``, i.e. multiplies each
    row by ``1 - lam / max|row|``: every weight shrinks, none becomes zero.
    """
    check_float("lam", lam, 0.0, low_open=True)
    for param in weight:  # iterates over rows, as the article's loop does
        param.add_(-lam * torch.sign(param).mul_(param.abs().div_(param.abs().max())))
    return weight


def distill_as_written(student: nn.Module, teacher: nn.Module, data: Dataset, *,
                       epochs: int = 1, lr: float = 0.01, batch_size: int = 64,
                       seed: int = 0) -> nn.Module:
    """Train ``student`` in place with the article's "distillation" loop; return it.

    As in the article, each step computes ``output = teacher(data)`` and then
    fits the student to the labels alone: the teacher's output is never used.
    """
    check_int("epochs", epochs, 1)
    check_float("lr", lr, 0.0, low_open=True)
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(student.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for x, target in batches(data.X_train, data.y_train, batch_size, shuffle=True,
                                 generator=gen):
            optimizer.zero_grad()
            output = teacher(x)  # noqa: F841  (computed, then ignored: the bug)
            loss = criterion(student(x), target)
            loss.backward()
            optimizer.step()
    return student


class PerSampleMNIST(torch.utils.data.Dataset):
    """uint8 digits served one at a time through PIL and ``ToTensor``, as
    ``torchvision.datasets.MNIST(transform=ToTensor())`` serves them."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        self.images, self.labels = images, labels
        self._to_image = Image.fromarray
        self._to_tensor = import_torchvision().transforms.ToTensor()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i):
        img = self._to_image(self.images[i].numpy(), mode="L")
        return self._to_tensor(img), int(self.labels[i])


def train_as_written(net: nn.Module, loader, *, epochs: int = 10, lr: float = 0.01) -> nn.Module:
    """Train ``net`` in place with the article's loop (SGD, per-sample loader)."""
    check_int("epochs", epochs, 1)
    check_float("lr", lr, 0.0, low_open=True)
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(net.parameters(), lr=lr)
    for _ in range(epochs):
        for data, target in loader:
            optimizer.zero_grad()
            loss = criterion(net(data), target)
            loss.backward()
            optimizer.step()
    return net


@torch.no_grad()
def accuracy_as_written(net: nn.Module, loader) -> float:
    """The article's evaluation loop, returning the fraction correct."""
    net.eval()
    correct = total = 0
    for data, target in loader:
        _, predicted = torch.max(net(data), 1)
        total += target.size(0)
        correct += (predicted == target).sum().item()
    return correct / total


def per_sample_loader(images: torch.Tensor, labels: torch.Tensor, *, batch_size: int = 64,
                      shuffle: bool = True, seed: int = 0) -> torch.utils.data.DataLoader:
    """The article's ``DataLoader`` over uint8 images (N, 28, 28); ``batch_size`` >= 1."""
    check_int("batch_size", batch_size, 1)
    gen = torch.Generator().manual_seed(seed)
    return torch.utils.data.DataLoader(PerSampleMNIST(images, labels), batch_size=batch_size,
                                       shuffle=shuffle, generator=gen)


def fake_references() -> list[str]:
    """The article's six references, as it prints them: none exists as cited."""
    return [
        'H. Han, H. Tang, L. Li, "Pruning neural networks by optimizing the Hessian", ICMLA 2015',
        'L. Li, H. Han, H. Tang, "Pruning neural networks via magnitude-based method", ICML 2016',
        'K. Chen, Y. Chen, Y. Liu, "Pruning deep neural networks via iterative weight '
        'clustering", ICML 2017',
        'S. Molchanov, "Knowledge distillation: A review and new perspectives", '
        'arXiv:1703.05158',
        'C. Romero, J. K. Yang, Y. LeCun, "Fitnets: Convolutional networks trained by '
        'fine-pruning", NIPS 2014',
        'D. Ba, A. Barret, Z. Chen, E. J. Hinton, Y. LeCun, "A deep learning perspective on '
        'multi-layer architectures", ICML 2014',
    ]
