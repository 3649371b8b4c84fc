"""Unit tests for firstlayer.train and what it trains with (settings, augment, precision, the linear CNN in input
space, the job tables): schedules, seeded labels and init, tiny reproducible training runs."""

from __future__ import annotations

import dataclasses
import itertools
from copy import deepcopy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import firstlayer.precision
import firstlayer.train
from firstlayer.augment import CROP_PAD, augment_batch
from firstlayer.config import load_schema
from firstlayer.inputspace import check_linear_cnn, linear_logits
from firstlayer.models import first_layer
from firstlayer.patches import normalise
from firstlayer.precision import PRECISIONS, float32_first_layer, resolve_device, resolve_precision
from firstlayer.runs import snapshots_frame
from firstlayer.settings import TrainSettings, log_schedule, resolve_steps, seed_streams
from firstlayer.train import init_model, random_labels, train, train_seeds

#: Networks whose seeds ``train_seeds`` trains together: stacked in input space (linear), one after another (small).
SEVERAL_SEEDS = ["linear", "small_cnn"]

MEAN = np.array([0.5, 0.5, 0.5])
STD = np.array([0.25, 0.25, 0.25])
SIZE, N = 8, 64


def two_class_data(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Class 0 dark, class 1 bright (separable by a linear model), 8x8 uint8 images."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(N) % 2
    base = torch.where(y == 1, 170, 60).view(-1, 1, 1, 1)
    x = (base + torch.randint(-40, 41, (N, 3, SIZE, SIZE), generator=g)).clamp(0, 255).to(torch.uint8)
    return x, y.long()


def linear_model(seed: int = 0, width: int = 4) -> torch.nn.Module:
    return init_model("linear", num_classes=2, kernel_size=3, width=width, image_size=SIZE, seed=seed)


def settings(**kw) -> TrainSettings:
    base = dict(steps=20, lr=0.01, batch_size=16, momentum=0.9, seed=0, snapshot_steps=log_schedule(20, 4),
                eval_steps=(5, 10), train_eval_size=10_000, eval_batch_size=10, device="cpu",
                precision="float32")  # fmt: skip
    return TrainSettings(**{**base, **kw})


def run(model_seed: int = 0, test=None, **kw):
    train_data = two_class_data()
    test_data = test if test is not None else two_class_data(seed=1)
    model = linear_model(model_seed)
    result = train(model, "linear", train_data, test_data, MEAN, STD, settings(**kw), log=lambda _: None)
    return model, result


def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        pred = model(normalise(x, torch.tensor(MEAN), torch.tensor(STD), torch.float32)).argmax(1)
    return float((pred == y).float().mean())


def metric(result, name: str) -> dict[int, float]:
    m = result.metrics[result.metrics.metric == name]
    return dict(zip(m.step.astype(int), m.value, strict=True))


# ------------------------------------------------------------------------ schedules and seeds


@pytest.mark.parametrize(("steps", "count"), [(1, 1), (2, 8), (10, 3), (400, 8), (20000, 20)])
def test_log_schedule(steps, count):
    s = log_schedule(steps, count)
    assert s[0] == 0 and s[-1] == steps
    assert list(s) == sorted(set(s))
    assert all(isinstance(v, int) for v in s)
    assert all(0 <= v <= steps for v in s)
    assert len(s) <= count + 2
    if steps >= 100 * count:
        assert len(s) >= count  # log-spaced: rounding merges only the smallest steps
        assert 1 in s
        ratios = np.diff(np.log(np.array(s[1:], dtype=float)))
        assert ratios.max() < 2 * np.log(steps) / (count - 1)


def test_seed_streams_are_deterministic_and_distinct():
    a, b = seed_streams(3), seed_streams(3)
    assert a == b
    assert list(a) == ["init", "order", "labels", "eval", "augment"]
    assert len(set(a.values())) == 5
    assert seed_streams(4) != a
    assert all(0 <= v < 2**63 for v in a.values())


@pytest.mark.parametrize("seed", [0, 3, 12345])
def test_new_seed_streams_leave_the_first_four_unchanged(seed):
    """The four streams as they were before "augment" was appended (spawn(4)): every existing run is unchanged."""
    children = np.random.SeedSequence(seed).spawn(4)
    before = [int(c.generate_state(1, dtype=np.uint64)[0] % (2**63)) for c in children]
    assert list(seed_streams(seed).values())[:4] == before


def test_random_labels_is_a_seeded_permutation():
    y = torch.arange(100) % 7
    a = random_labels(y, 11)
    assert torch.equal(torch.bincount(a, minlength=7), torch.bincount(y, minlength=7))
    assert torch.equal(a, random_labels(y, 11))
    assert not torch.equal(a, random_labels(y, 12))
    assert (a != y).float().mean() > 0.5
    assert torch.equal(y, torch.arange(100) % 7)  # the input is not modified


def test_init_model_is_reproducible_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a, b, c = linear_model(5), linear_model(5), linear_model(6)
    assert torch.equal(torch.get_rng_state(), state)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)
    assert not torch.equal(first_layer(a, "linear").weight, first_layer(c, "linear").weight)
    # the global stream then continues as if init_model had never been called
    after = torch.rand(3)
    torch.manual_seed(123)
    assert torch.equal(after, torch.rand(3))


def trained_batches(monkeypatch, steps: int, batch_size: int, n: int = 10, seed: int = 0) -> list[list[int]]:
    """The training images of each step, as indices into `n` distinct images (seen through ``augment_batch``,
    which the loop calls on each step's batch and nowhere else)."""
    x = (torch.arange(n).view(n, 1, 1, 1) * 20 + torch.zeros(n, 3, SIZE, SIZE)).to(torch.uint8)  # image i: 20 i
    seen = []
    monkeypatch.setattr(firstlayer.train, "augment_batch", lambda images, g: seen.append(images[:, 0, 0, 0]) or images)
    s = settings(steps=steps, batch_size=batch_size, augment=True, seed=seed, train_eval_size=n)
    train(linear_model(), "linear", (x, torch.arange(n) % 2), two_class_data(1), MEAN, STD, s, log=lambda _: None)
    return [(images // 20).tolist() for images in seen]


def test_batches_are_epochs_of_a_seeded_permutation(monkeypatch):
    batches = trained_batches(monkeypatch, steps=4, batch_size=3)
    epoch = [i for batch in batches[:3] for i in batch]
    assert all(len(b) == 3 for b in batches) and len(set(epoch)) == 9  # last partial batch dropped, no repeats
    assert batches[3] != batches[0]  # a new permutation starts
    assert trained_batches(monkeypatch, steps=4, batch_size=3) == batches  # seeded
    assert trained_batches(monkeypatch, steps=4, batch_size=3, seed=1) != batches
    assert resolve_steps(None, 1, 10, 3) == 3  # one epoch of steps uses up one permutation


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in {"cpu", "cuda"}
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="cuda"):
            resolve_device("cuda")


# ------------------------------------------------------------------------ training


def test_train_is_bitwise_reproducible_and_seed_dependent():
    _, a = run()
    _, b = run()
    assert list(a.snapshots) == list(b.snapshots)
    for step in a.snapshots:
        assert torch.equal(a.snapshots[step], b.snapshots[step])
    assert a.metrics.equals(b.metrics)
    _, c = run(seed=1)  # same init, other batch order
    assert torch.equal(c.snapshots[0], a.snapshots[0])
    assert not torch.equal(c.snapshots[20], a.snapshots[20])
    _, d = run(model_seed=1)  # other init
    assert not torch.equal(d.snapshots[0], a.snapshots[0])


def test_train_snapshots_and_metrics_layout():
    model, r = run()
    s = settings()
    assert sorted(r.snapshots) == sorted({0, *s.snapshot_steps, s.steps})
    for w in r.snapshots.values():
        assert w.shape == (4, 3, 3, 3) and w.dtype == torch.float32
    # step 0 is the init, the last snapshot is the trained layer, and snapshots are copies
    assert torch.equal(r.snapshots[0], first_layer(linear_model(0), "linear").weight.detach())
    assert torch.equal(r.snapshots[20], first_layer(model, "linear").weight.detach())
    steps = sorted(r.snapshots)
    for i, j in itertools.pairwise(steps):  # every snapshot is a copy taken at its own step
        assert not torch.equal(r.snapshots[i], r.snapshots[j])
    assert set(r.metrics.columns) == {"step", "metric", "value"}
    loss = metric(r, "loss")
    assert sorted(loss) == list(range(1, 21)) and np.isfinite(list(loss.values())).all()
    for name in ("train_accuracy", "test_accuracy"):
        acc = metric(r, name)
        assert sorted(acc) == [0, 5, 10, 20]
        assert all(0.0 <= v <= 1.0 for v in acc.values())
    # the toy task is learnt
    assert np.mean([loss[i] for i in range(16, 21)]) < np.mean([loss[i] for i in range(1, 6)])
    assert metric(r, "train_accuracy")[20] > 0.9
    frame = snapshots_frame(r.snapshots)
    assert len(frame) == len(r.snapshots) * 4 * 27


def test_snapshot_and_eval_steps_are_separate_and_always_include_the_ends():
    _, r = run(snapshot_steps=(3,), eval_steps=(7,))
    assert sorted(r.snapshots) == [0, 3, 20]
    assert sorted(metric(r, "train_accuracy")) == sorted(metric(r, "test_accuracy")) == [0, 7, 20]
    _, r = run(snapshot_steps=(), eval_steps=())
    assert sorted(r.snapshots) == [0, 20]
    assert sorted(metric(r, "test_accuracy")) == [0, 20]


def test_test_accuracy_is_measured_on_the_test_split():
    """Test split = the training images with every label flipped: with two classes each prediction is right on
    exactly one of the two splits, so test accuracy = 1 - train accuracy at every eval step."""
    x, y = two_class_data()
    model, r = run(test=(x, 1 - y))
    train_acc, test_acc = metric(r, "train_accuracy"), metric(r, "test_accuracy")
    for step in train_acc:
        assert test_acc[step] == pytest.approx(1.0 - train_acc[step], abs=1e-12)
    assert train_acc[20] > 0.9 and test_acc[20] < 0.1
    assert test_acc[20] == pytest.approx(accuracy(model, x, 1 - y), abs=1e-12)


def test_train_accuracy_uses_a_seeded_subset_of_size_train_eval_size():
    _, r = run(train_eval_size=7)
    values = metric(r, "train_accuracy").values()
    assert all(round(v * 7) == pytest.approx(v * 7, abs=1e-9) for v in values)


def test_random_labels_change_training_labels_but_not_test_labels():
    x, y = two_class_data()
    x_test, y_test = two_class_data(seed=1)
    model, r = run(labels="random", seed=2)
    train_acc, test_acc = metric(r, "train_accuracy")[20], metric(r, "test_accuracy")[20]
    permuted = random_labels(y, seed_streams(2)["labels"])
    assert not torch.equal(permuted, y)
    # train accuracy is measured against the permuted labels, test accuracy against the true ones
    assert train_acc == pytest.approx(accuracy(model, x, permuted), abs=1e-12)
    assert test_acc == pytest.approx(accuracy(model, x_test, y_test), abs=1e-12)
    # and the run differs from a true-label run with the same seed
    _, r_true = run(seed=2)
    assert not torch.equal(r.snapshots[20], r_true.snapshots[20])


def test_unknown_label_mode_raises():
    with pytest.raises(ValueError, match="shuffled"):
        run(labels="shuffled")


# ------------------------------------------------------------------------ several seeds at once

MODEL_KW = dict(num_classes=2, kernel_size=3, width=4, image_size=SIZE)


def sequential_and_stacked(arch: str, seeds: list[int], init_scale: float = 1.0, **kw):
    """Each seed trained alone by ``train`` and all of them at once by ``train_seeds``, on the toy task."""
    s = settings(train_eval_size=40, **kw)  # a per-seed subset of the 64 training images
    data, test = two_class_data(), two_class_data(seed=1)
    model_kw = {**MODEL_KW, "init_scale": init_scale}
    alone = [
        train(init_model(arch, seed=seed, **model_kw), arch, data, test, MEAN, STD,
              dataclasses.replace(s, seed=seed), log=lambda _: None)
        for seed in seeds
    ]  # fmt: skip
    together = train_seeds(arch, model_kw, data, test, MEAN, STD, s, seeds, log=lambda _: None)
    return alone, together


def assert_same_run(a, b) -> None:
    assert list(a.snapshots) == list(b.snapshots)
    for step, w in a.snapshots.items():
        assert b.snapshots[step].shape == w.shape and b.snapshots[step].dtype == torch.float32
        torch.testing.assert_close(b.snapshots[step], w, rtol=1e-5, atol=1e-5 * float(w.abs().max()))
    assert a.metrics[["step", "metric"]].equals(b.metrics[["step", "metric"]])
    accuracy_rows = a.metrics.metric != "loss"
    assert np.array_equal(a.metrics.value[accuracy_rows], b.metrics.value[accuracy_rows])
    np.testing.assert_allclose(b.metrics.value[~accuracy_rows], a.metrics.value[~accuracy_rows], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("arch", SEVERAL_SEEDS)
@pytest.mark.parametrize("labels", ["true", "random", "frozen"])
@pytest.mark.parametrize(("optimizer", "lr"), [("sgd", 0.01), ("adam", 0.003)])
def test_train_seeds_equals_one_train_per_seed(arch, labels, optimizer, lr):
    alone, together = sequential_and_stacked(arch, [0, 3, 7], labels=labels, optimizer=optimizer, lr=lr,
                                             weight_decay=1e-3)  # fmt: skip
    assert len(together) == 3
    for a, b in zip(alone, together, strict=True):
        assert_same_run(a, b)
        assert b.extra["seeds"] == 3 and b.extra["images_per_second"] > 0
        if labels == "frozen":  # the stacked first layer is not trained either
            assert all(torch.equal(w, b.snapshots[0]) for w in b.snapshots.values())


@pytest.mark.parametrize("arch", SEVERAL_SEEDS)
def test_train_seeds_with_augment_and_init_scale(arch):
    """Each seed's batches are augmented by its own generator, its first layer scaled at init, as ``train`` does."""
    alone, together = sequential_and_stacked(arch, [0, 3], init_scale=0.1, augment=True, optimizer="adam", lr=0.003)
    for a, b in zip(alone, together, strict=True):
        assert_same_run(a, b)
    _, plain = sequential_and_stacked(arch, [0, 3])
    assert torch.equal(together[0].snapshots[0], plain[0].snapshots[0] * 0.1)
    assert not torch.equal(together[0].snapshots[20], plain[0].snapshots[20] * 0.1)


@pytest.mark.parametrize("arch", SEVERAL_SEEDS)
def test_train_seeds_with_one_seed(arch):
    alone, together = sequential_and_stacked(arch, [5])
    assert len(together) == 1
    assert_same_run(alone[0], together[0])


def test_train_seeds_gives_each_seed_its_own_run():
    _, (a, b, c) = sequential_and_stacked("small_cnn", [1, 2, 1], labels="random")
    assert not torch.equal(a.snapshots[0], b.snapshots[0])  # init
    assert not torch.equal(a.snapshots[20], b.snapshots[20])
    assert not a.metrics.equals(b.metrics)
    for step in a.snapshots:  # a repeated seed is the same run
        assert torch.equal(a.snapshots[step], c.snapshots[step])


@pytest.mark.parametrize("arch", ["small_cnn", "resnet20"])
def test_train_seeds_trains_other_networks_one_after_another_bitwise(arch):
    """Only the linear CNN stacks; other networks' seeds (BatchNorm included) are each one ``train``, bit for bit."""
    alone, together = sequential_and_stacked(arch, [0, 3], labels="random", steps=6)
    for a, b in zip(alone, together, strict=True):
        assert all(torch.equal(a.snapshots[k], b.snapshots[k]) for k in a.snapshots) and a.metrics.equals(b.metrics)
        assert b.extra["seeds"] == 2 and b.seconds >= a.seconds


def test_stacking_refuses_what_the_input_space_forward_does_not_compute():
    """A stacked network is never in eval mode: dropout or batch statistics are refused, as is any other network."""
    check_linear_cnn(linear_model())
    dropout = linear_model()
    dropout.drop = torch.nn.Dropout(0.5)
    with pytest.raises(ValueError, match=r"dropout \(drop\).*eval mode"):
        check_linear_cnn(dropout)
    batch_norm = linear_model()
    batch_norm.norm = torch.nn.BatchNorm2d(3, affine=False)
    with pytest.raises(ValueError, match="buffers"):
        check_linear_cnn(batch_norm)
    with pytest.raises(ValueError, match="LinearCNN"):
        check_linear_cnn(init_model("small_cnn", seed=0, **MODEL_KW))


def test_train_seeds_rejects_what_it_cannot_train():
    data = two_class_data()
    with pytest.raises(ValueError, match="at least one seed"):
        train_seeds("linear", MODEL_KW, data, data, MEAN, STD, settings(), [])
    with pytest.raises(ValueError, match="shuffled"):
        train_seeds("linear", MODEL_KW, data, data, MEAN, STD, settings(labels="shuffled"), [0])


def test_linear_input_space_forward_equals_the_modules():
    """The stacked linear forward (one transposed conv of the weights, then x . G) is LinearCNN's forward."""
    models = [linear_model(seed) for seed in (0, 1)]
    params = {name: torch.stack([m.get_parameter(name) for m in models]) for name, _ in models[0].named_parameters()}
    x = torch.randn(2, 5, 3, SIZE, SIZE)
    with torch.no_grad():
        expected = torch.stack([m(x[i]) for i, m in enumerate(models)])
        torch.testing.assert_close(linear_logits(params, x), expected, rtol=1e-5, atol=1e-5)
        shared = torch.stack([m(x[0]) for m in models])  # one batch for every seed (the test split)
        torch.testing.assert_close(linear_logits(params, x[0]), shared, rtol=1e-5, atol=1e-5)


def test_compile_flag_wraps_the_training_forward(monkeypatch):
    """compile=True sends the training forward through torch.compile (faked here: compiling is slow on a CPU);
    the eager module is still the one snapshotted, so the run is unchanged."""
    compiled = []

    def fake_compile(fn, *args, **kwargs):
        compiled.append(fn)
        return fn

    monkeypatch.setattr(torch, "compile", fake_compile)
    model, r = run(compile=True)
    assert len(compiled) == 1 and callable(compiled[0])  # the linear CNN's input-space forward of this model
    x = torch.randn(5, 3, SIZE, SIZE)
    torch.testing.assert_close(compiled[0](x), model(x), rtol=1e-5, atol=1e-5)
    _, plain = run()
    assert all(torch.equal(r.snapshots[k], plain.snapshots[k]) for k in plain.snapshots)
    data = two_class_data()
    train_seeds("small_cnn", MODEL_KW, data, data, MEAN, STD, settings(compile=True, steps=2), [0], log=lambda _: None)
    assert len(compiled) == 2 and callable(compiled[1])
    assert TrainSettings(steps=1, lr=0.1).compile is False
    cnn = init_model("small_cnn", seed=0, **MODEL_KW)
    train(cnn, "small_cnn", data, data, MEAN, STD, settings(compile=True, steps=2), log=lambda _: None)
    assert compiled[2] is cnn  # other networks: the module itself


def test_linear_train_runs_in_input_space_as_the_module_would(monkeypatch):
    """train() steps the linear CNN through its input-space forward; the run is the module forward's run, rounding
    aside (and bitwise the same accuracies)."""
    _, fast = run(labels="random", optimizer="adam", lr=0.003, augment=True)
    monkeypatch.setattr(firstlayer.train, "input_space_forward", lambda model: model)
    _, plain = run(labels="random", optimizer="adam", lr=0.003, augment=True)
    assert_same_run(plain, fast)
    assert not all(torch.equal(plain.snapshots[k], fast.snapshots[k]) for k in plain.snapshots)  # another path


# ------------------------------------------------------------------------ augment, init_scale, frozen, epochs


def random_images(n: int = 64, seed: int = 0, side: int = SIZE) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, side, side), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def transform(img: torch.Tensor, dy: int, dx: int, flip: bool) -> torch.Tensor:
    """The reference: crop of the reflect-padded image shifted by (dy, dx), then an optional horizontal flip."""
    p = CROP_PAD
    padded = F.pad(img.float()[None], (p, p, p, p), mode="reflect")[0]
    crop = padded[:, p + dy : p + dy + img.shape[1], p + dx : p + dx + img.shape[2]]
    return (crop.flip(-1) if flip else crop).to(torch.uint8)


def test_augment_batch_crops_and_flips_each_image():
    # 16 px: on 8 px images a 4 px shift can show a symmetric window, the same as a flipped 3 px shift
    x = random_images(side=16)
    before = x.clone()
    out = augment_batch(x, torch.Generator().manual_seed(1))
    assert out.shape == x.shape and out.dtype == torch.uint8
    assert torch.equal(x, before)  # the input is not modified
    shifts = range(-CROP_PAD, CROP_PAD + 1)
    used = []
    for img, o in zip(x, out, strict=True):
        matches = [(dy, dx, f) for dy in shifts for dx in shifts for f in (False, True)
                   if torch.equal(transform(img, dy, dx, f), o)]  # fmt: skip
        assert len(matches) == 1  # every output is one crop (+ flip) of its own image
        used.append(matches[0])
    dys, dxs, flips = zip(*used, strict=True)
    assert 0 < sum(flips) < len(flips)  # some flipped, some not
    assert max(map(abs, dys)) == CROP_PAD and max(map(abs, dxs)) == CROP_PAD  # shifts reach the pad
    assert len(set(zip(dys, dxs, strict=True))) > 20  # many different windows


def test_augment_batch_is_seeded():
    x = random_images()
    a = augment_batch(x, torch.Generator().manual_seed(5))
    assert torch.equal(a, augment_batch(x, torch.Generator().manual_seed(5)))
    assert not torch.equal(a, augment_batch(x, torch.Generator().manual_seed(6)))
    g = torch.Generator().manual_seed(5)
    first, second = augment_batch(x, g), augment_batch(x, g)  # the generator advances: new draws per batch
    assert torch.equal(first, a) and not torch.equal(first, second)
    with pytest.raises(ValueError, match="cannot reflect-pad 4x4 images by 4"):
        augment_batch(random_images(side=4), g)


def test_training_with_augment_is_seeded_and_differs():
    _, a = run(augment=True)
    _, b = run(augment=True)
    _, plain = run()
    assert all(torch.equal(a.snapshots[k], b.snapshots[k]) for k in a.snapshots)
    assert a.metrics.equals(b.metrics)
    assert torch.equal(a.snapshots[0], plain.snapshots[0])
    assert not torch.equal(a.snapshots[20], plain.snapshots[20])
    assert metric(a, "train_accuracy")[20] > 0.9  # the toy task is still learnt (brightness survives crops)


def test_without_augment_no_augmentation_runs(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("augment_batch called with augment off")

    _, before = run()
    monkeypatch.setattr(firstlayer.train, "augment_batch", forbidden)
    _, after = run()
    assert all(torch.equal(before.snapshots[k], after.snapshots[k]) for k in before.snapshots)
    assert before.metrics.equals(after.metrics)
    data = two_class_data()
    train_seeds("linear", MODEL_KW, data, data, MEAN, STD, settings(steps=2), [0, 1], log=lambda _: None)
    with pytest.raises(AssertionError, match="augment off"):
        run(augment=True)


@pytest.mark.parametrize("arch", ["linear", "small_cnn"])
def test_init_scale_multiplies_the_first_layer_init(arch):
    kw = dict(MODEL_KW, seed=3)
    base, scaled = init_model(arch, **kw), init_model(arch, init_scale=0.01, **kw)
    conv, conv_scaled = first_layer(base, arch), first_layer(scaled, arch)
    assert torch.equal(conv_scaled.weight, conv.weight * 0.01)
    if conv.bias is not None:  # small_cnn's first layer has a bias: scaled too
        assert torch.equal(conv_scaled.bias, conv.bias * 0.01)
    first = {id(p) for p in conv.parameters()}
    for p, q in zip(base.parameters(), scaled.parameters(), strict=True):
        if id(p) not in first:  # the rest of the network is the default init
            assert torch.equal(p, q)
    r = train(scaled, arch, two_class_data(), two_class_data(seed=1), MEAN, STD, settings(), log=lambda _: None)
    assert torch.equal(r.snapshots[0], conv.weight.detach() * 0.01)
    assert not torch.equal(r.snapshots[20], r.snapshots[0])


@pytest.mark.parametrize("arch", ["linear", "small_cnn"])
@pytest.mark.parametrize(("optimizer", "lr"), [("sgd", 0.01), ("adam", 0.003)])
def test_frozen_first_layer_keeps_its_init(arch, optimizer, lr):
    """Momentum and weight decay included: the first layer (weight and bias) stays bitwise at init, the rest
    trains, the labels are the true ones."""
    model = init_model(arch, seed=0, **MODEL_KW)
    init = copy_state(model)
    s = settings(labels="frozen", optimizer=optimizer, lr=lr, weight_decay=1e-2)
    r = train(model, arch, two_class_data(), two_class_data(seed=1), MEAN, STD, s, log=lambda _: None)
    conv = first_layer(model, arch)
    first = {name for name, p in model.named_parameters() if any(p is q for q in conv.parameters())}
    assert first and all(not model.get_parameter(name).requires_grad for name in first)
    for name, p in model.named_parameters():
        if name in first:
            assert torch.equal(p, init[name]), name
        else:
            assert not torch.equal(p, init[name]), name
    assert all(torch.equal(w, r.snapshots[0]) for w in r.snapshots.values())
    assert sorted(r.snapshots) == sorted({0, *s.snapshot_steps, s.steps})  # snapshots still written
    # true labels: the same run as labels "true" up to the first layer's training, not a permutation
    loss = metric(r, "loss")
    true = train(init_model(arch, seed=0, **MODEL_KW), arch, two_class_data(), two_class_data(seed=1), MEAN, STD,
                 settings(optimizer=optimizer, lr=lr, weight_decay=1e-2), log=lambda _: None)  # fmt: skip
    assert loss[1] == metric(true, "loss")[1]  # same first batch, labels and init: same first loss
    assert loss[20] != metric(true, "loss")[20]


def copy_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def test_resolve_steps_from_epochs():
    assert resolve_steps(100, None, 1000, 64) == 100
    assert resolve_steps(None, 3, 1000, 64) == 3 * 15  # 15 full batches of 64 per epoch, the partial one dropped
    assert resolve_steps(None, 2, 10, 64) == 2  # a batch larger than the data is the whole data: one per epoch
    for steps, epochs in ((None, None), (10, 2)):
        with pytest.raises(ValueError, match="exactly one of steps and epochs"):
            resolve_steps(steps, epochs, 1000, 64)


# ------------------------------------------------------------------------ precision


def test_resolve_precision(monkeypatch):
    cpu = torch.device("cpu")
    assert resolve_precision("float32", cpu, "small_cnn") is None
    assert resolve_precision("bfloat16", cpu, "small_cnn") == torch.bfloat16
    for name in PRECISIONS:  # the linear CNN is all first layer: always float32
        assert resolve_precision(name, cpu, "linear") is None
    for native, expected in ((True, torch.bfloat16), (False, None)):
        monkeypatch.setattr(firstlayer.precision, "native_bfloat16", lambda device, native=native: native)
        assert resolve_precision("auto", cpu, "resnet20") == expected
    with pytest.raises(ValueError, match=r"'half'.*auto, float32, bfloat16"):
        resolve_precision("half", cpu, "small_cnn")


def test_train_settings_defaults_are_the_schemas():
    """One home for each default: TrainSettings reads the config schema's."""
    schema = load_schema()
    arch, training = schema["$defs"]["architecture"]["properties"], schema["properties"]["training"]["properties"]
    s = TrainSettings(steps=1, lr=0.1)
    for name in ("batch_size", "optimizer", "momentum", "weight_decay", "augment"):
        assert getattr(s, name) == arch[name]["default"], name
    for name in ("train_eval_size", "eval_batch_size", "device", "compile", "precision", "log_every"):
        assert getattr(s, name) == training[name]["default"], name
    assert s.precision == "auto"


@pytest.mark.parametrize("arch", ["small_cnn", "resnet20", "vgg11_bn", "vit_tiny"])
def test_first_layer_computes_in_float32_under_bfloat16_autocast(arch):
    """Inside ``float32_first_layer`` the first layer's output and weight gradient are exactly the float32 ones
    for the input and upstream gradient it got, while the layers above it run in bfloat16; outside, the module is
    as before (no instance attribute left, TF32 flag restored)."""
    size = 32 if arch in ("vit_tiny", "vgg11_bn") else SIZE
    model = init_model(arch, num_classes=2, kernel_size=4 if arch == "vit_tiny" else 3, width=None if arch ==
                       "vit_tiny" else 8, image_size=size, seed=0)  # fmt: skip
    conv = first_layer(model, arch)
    seen = {}

    def keep(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        seen.update(x=inputs[0], out=out)
        out.register_hook(lambda grad: seen.update(grad_out=grad))

    conv.register_forward_hook(keep)
    dtypes = []
    above = [m for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)) and m is not conv]
    hooks = [m.register_forward_hook(lambda m, i, o: dtypes.append(o.dtype)) for m in above]
    x = torch.randn(4, 3, size, size)
    tf32 = torch.backends.cudnn.allow_tf32
    with float32_first_layer(conv):
        assert torch.backends.cudnn.allow_tf32 is False and torch.backends.cuda.matmul.allow_tf32 is False
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(x).float().square().sum()
        loss.backward()
    assert "forward" not in vars(conv) and torch.backends.cudnn.allow_tf32 == tf32
    assert torch.bfloat16 in dtypes  # the layers above did run in bfloat16
    assert seen["x"].dtype == seen["out"].dtype == seen["grad_out"].dtype == torch.float32
    expected_out = conv._conv_forward(seen["x"], conv.weight, conv.bias)
    assert torch.equal(seen["out"], expected_out)
    expected_grad = torch.nn.grad.conv2d_weight(seen["x"], conv.weight.shape, seen["grad_out"], stride=conv.stride,
                                                padding=conv.padding)  # fmt: skip
    torch.testing.assert_close(conv.weight.grad, expected_grad, rtol=1e-5, atol=1e-6 * float(expected_grad.abs().max()))
    for h in hooks:
        h.remove()


def test_bfloat16_training_is_reproducible_and_close_to_float32():
    """bfloat16 above the first layer: the same run twice is bitwise equal, the result says what it computed in,
    and the trained filters follow the float32 run's closely (the first layer itself is float32)."""
    data, test = two_class_data(), two_class_data(seed=1)

    def go(precision: str):
        model = init_model("small_cnn", seed=0, **MODEL_KW)
        return train(model, "small_cnn", data, test, MEAN, STD, settings(precision=precision), log=lambda _: None)

    a, b, ref = go("bfloat16"), go("bfloat16"), go("float32")
    assert a.precision == "bfloat16" and ref.precision == "float32"
    assert all(torch.equal(a.snapshots[k], b.snapshots[k]) for k in a.snapshots)
    assert all(w.dtype == torch.float32 and w.is_contiguous() for w in a.snapshots.values())
    assert torch.equal(a.snapshots[0], ref.snapshots[0])
    change, ref_change = a.snapshots[20] - a.snapshots[0], ref.snapshots[20] - ref.snapshots[0]
    assert not torch.equal(change, ref_change)  # it did compute in bfloat16
    assert float((change - ref_change).norm() / ref_change.norm()) < 0.05


@pytest.mark.parametrize("arch", SEVERAL_SEEDS)
def test_train_seeds_in_bfloat16_equals_one_train_per_seed(arch):
    alone, together = sequential_and_stacked(arch, [0, 3], precision="bfloat16", optimizer="adam", lr=0.003)
    for a, b in zip(alone, together, strict=True):
        assert a.precision == b.precision == ("float32" if arch == "linear" else "bfloat16")
        assert_same_run(a, b)


def test_float32_first_layer_nests_survives_errors_and_wraps_copies():
    conv = torch.nn.Conv2d(3, 4, 3)
    x = torch.randn(2, 3, 8, 8)
    expected = conv(x)

    def flags() -> tuple[bool, bool]:
        return torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32

    before = flags()
    with pytest.raises(KeyError), float32_first_layer(conv):
        raise KeyError("boom")
    assert "forward" not in vars(conv) and flags() == before
    with float32_first_layer(conv), torch.autocast("cpu", dtype=torch.bfloat16):
        outer = conv.forward
        with float32_first_layer(conv):
            assert conv(x).dtype == torch.float32
        assert conv.forward is outer  # the inner scope put the outer wrapper back
        copy = deepcopy(conv)
        with torch.no_grad():
            copy.weight.mul_(2)
        out = copy(x)  # the copy's wrapper computes with the copy's weights, in float32
        assert out.dtype == torch.float32
        with torch.autocast("cpu", enabled=False):
            torch.testing.assert_close(out, F.conv2d(x, copy.weight, copy.bias))
        assert torch.equal(conv(x), expected)
    assert "forward" not in vars(conv) and conv(x).dtype == torch.float32
