"""The baseline ``benchmarks.speed`` compares against: the PyTorch "Transfer Learning for Computer Vision" tutorial.

Written from the tutorial's published recipe (pytorch.org/tutorials/beginner/transfer_learning_tutorial):
``ImageFolder``-style PIL loading with the transforms re-run on every image of every epoch,
a ``DataLoader``, NCHW tensors, ``loss.item()`` and a correct-count ``.item()`` every step,
``torch.set_grad_enabled(phase == 'train')``, SGD momentum 0.9 and ``StepLR(7, 0.1)``, a val
pass after every training epoch and the best-val weights restored at the end.

Deliberate differences from the published page, each the same for both sides of the benchmark:
batch 32 instead of 4 (ftlib's batch; bigger batches are faster per image on a CPU, so this
helps the baseline), lr scaled linearly with it (0.001 x 32/4, Goyal et al. 2017), and the
backbone, resolution, normalisation and image files of the ftlib run it is compared with.

Example:
    >>> files, labels = split_files(ds, "train")  # doctest: +SKIP
    >>> secs, hist = tutorial_finetune(bb.model, files, labels, *split_files(ds, "val"),
    ...                                mean=bb.mean, std=bb.std, epochs=2, res=160)  # doctest: +SKIP
"""
from __future__ import annotations

import copy
import time

import torch
from torch import nn
from torchvision import transforms
from torchvision.datasets.folder import default_loader

from ftlib import sources

TUTORIAL_LR = 0.001 * 32 / 4  # the tutorial's lr at batch 4, scaled linearly to batch 32
TUTORIAL_BATCH = 32


def split_files(ds, part: str) -> tuple:
    """``(paths, labels)`` of the image files behind ``ds.train`` / ``ds.val`` / ``ds.test``.

    A split's ``indices`` point into the decoded dataset, whose order is the order of
    ``sources.locate(name).files()``; we check the labels agree, so both sides of the
    benchmark see exactly the same images.
    """
    split = getattr(ds, part)
    items = sources.locate(ds.name).files()
    classes = sorted({c for _, c, _ in items})
    paths = [items[i][0] for i in split.indices.tolist()]
    labels = [classes.index(items[i][1]) for i in split.indices.tolist()]
    if labels != split.labels.tolist():
        raise RuntimeError(f"file order of {ds.name} does not match its decoded split {part!r}")
    return paths, labels


class FileImages(torch.utils.data.Dataset):
    """What ``torchvision.datasets.ImageFolder`` does per item: open the file with PIL, transform it."""

    def __init__(self, paths, labels, transform):
        self.paths, self.labels, self.transform = list(paths), list(labels), transform

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        return self.transform(default_loader(self.paths[i])), self.labels[i]


def data_transforms(res: int, mean, std) -> dict:
    """The tutorial's ``data_transforms``, at ``res`` and with the backbone's normalisation."""
    return {
        "train": transforms.Compose([transforms.RandomResizedCrop(res), transforms.RandomHorizontalFlip(),
                                     transforms.ToTensor(), transforms.Normalize(mean, std)]),
        "val": transforms.Compose([transforms.Resize(res), transforms.CenterCrop(res),
                                   transforms.ToTensor(), transforms.Normalize(mean, std)]),
    }


def make_loaders(train_files, train_labels, val_files, val_labels, res, mean, std, batch_size=TUTORIAL_BATCH,
                 seed=0) -> dict:
    tf = data_transforms(res, mean, std)
    data = {"train": FileImages(train_files, train_labels, tf["train"]),
            "val": FileImages(val_files, val_labels, tf["val"])}
    # num_workers=0 (the tutorial uses 4): on this machine the loader workers would compete with the
    # training step for the same CPU cores, and ftlib's own batch preparation runs in the main process too.
    return {x: torch.utils.data.DataLoader(data[x], batch_size=batch_size, shuffle=True, num_workers=0,
                                           generator=torch.Generator().manual_seed(seed)) for x in data}


def train_model(model, loaders, criterion, optimizer, scheduler, num_epochs=25) -> dict:
    """The tutorial's ``train_model``: train + val phases per epoch, best-val weights restored."""
    device = next(model.parameters()).device
    sizes = {x: len(loaders[x].dataset) for x in loaders}
    best_wts, best_acc = copy.deepcopy(model.state_dict()), 0.0
    hist = {"train_loss": [], "val_acc": [], "train_images": 0}
    for epoch in range(num_epochs):
        for phase in ["train", "val"]:
            if phase == "train":
                model.train()  # every BatchNorm back in train mode, frozen or not, as the tutorial does
            else:
                model.eval()
            running_loss, running_corrects = 0.0, 0
            for inputs, labels in loaders[phase]:
                inputs, labels = inputs.to(device), labels.to(device)
                optimizer.zero_grad()
                with torch.set_grad_enabled(phase == "train"):
                    outputs = model(inputs)
                    _, preds = torch.max(outputs, 1)
                    loss = criterion(outputs, labels)
                    if phase == "train":
                        loss.backward()
                        optimizer.step()
                running_loss += loss.item() * inputs.size(0)  # a host sync every step
                running_corrects += torch.sum(preds == labels).item()
                if phase == "train":
                    hist["train_images"] += inputs.size(0)
            if phase == "train":
                scheduler.step()
            epoch_acc = running_corrects / sizes[phase]
            if phase == "train":
                hist["train_loss"].append(running_loss / sizes[phase])
            else:
                hist["val_acc"].append(epoch_acc)
                if epoch_acc > best_acc:
                    best_acc, best_wts = epoch_acc, copy.deepcopy(model.state_dict())
    model.load_state_dict(best_wts)
    hist["best_val"] = best_acc
    return hist


def tutorial_finetune(model, train_files, train_labels, val_files, val_labels, *, mean, std, epochs: int, res: int,
                      batch_size: int = TUTORIAL_BATCH, lr: float = TUTORIAL_LR, seed: int = 0) -> tuple:
    """The tutorial's "Finetuning the ConvNet": every parameter trains. Returns ``(seconds, history)``."""
    start = time.perf_counter()
    loaders = make_loaders(train_files, train_labels, val_files, val_labels, res, mean, std, batch_size, seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=7, gamma=0.1)
    hist = train_model(model, loaders, nn.CrossEntropyLoss(), optimizer, scheduler, num_epochs=epochs)
    return time.perf_counter() - start, hist


def tutorial_fixed_feature(model, head: nn.Linear, train_files, train_labels, val_files, val_labels, *, mean, std,
                           res: int, epochs: int = 25, batch_size: int = TUTORIAL_BATCH, lr: float = TUTORIAL_LR,
                           seed: int = 0) -> tuple:
    """The tutorial's "ConvNet as fixed feature extractor": SGD on ``head`` only, through the frozen body.

    The body is frozen with ``requires_grad=False`` alone, so ``model.train()`` leaves its
    BatchNorm layers in train mode (batch statistics, running stats updated) exactly as in
    the tutorial: this is not a pure linear probe. Returns ``(seconds, history)``.
    """
    start = time.perf_counter()
    for p in model.parameters():
        p.requires_grad = False
    for p in head.parameters():
        p.requires_grad = True
    loaders = make_loaders(train_files, train_labels, val_files, val_labels, res, mean, std, batch_size, seed)
    optimizer = torch.optim.SGD(head.parameters(), lr=lr, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=7, gamma=0.1)
    hist = train_model(model, loaders, nn.CrossEntropyLoss(), optimizer, scheduler, num_epochs=epochs)
    return time.perf_counter() - start, hist


def naive_eval(model, files, labels, res: int, mean, std, batch_size: int = TUTORIAL_BATCH) -> tuple:
    """The tutorial's val phase on its own: PIL + DataLoader, NCHW, ``.item()`` per batch.

    Returns ``(seconds, accuracy)``.
    """
    start = time.perf_counter()
    tf = data_transforms(res, mean, std)["val"]
    loader = torch.utils.data.DataLoader(FileImages(files, labels, tf), batch_size=batch_size, shuffle=False,
                                         num_workers=0)
    device = next(model.parameters()).device
    model.eval()
    corrects = 0
    with torch.no_grad():
        for inputs, targets in loader:
            outputs = model(inputs.to(device))
            _, preds = torch.max(outputs, 1)
            corrects += torch.sum(preds == targets.to(device)).item()
    return time.perf_counter() - start, corrects / max(1, len(files))
